"""The operator HTTP API (CONTRACT §6), its access control and the dashboard.

``create_app(ctx)`` builds the FastAPI application from an :class:`ApiContext`
holding the ports of the stages; the API depends on those read interfaces only.
"""
