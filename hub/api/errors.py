"""Errors as JSON ``{"detail": …}`` with the right status; port exceptions mapped once here."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse

from hub.logging import get_logger
from hub.ports import Conflict, NotFound, RuleInvalid
from hub.store.base import StoreQueryError, StoreUnavailable

log = get_logger(__name__)


class BodyTooLarge(HTTPException):
    """The request body is larger than ``settings.api.max_body_bytes``.

    An HTTPException so FastAPI's body reader passes it through unchanged.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE, f"request body larger than {limit} bytes"
        )


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "not found"}, status_code=404)


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "conflict"}, status_code=409)


async def _rule_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RuleInvalid)
    return JSONResponse({"detail": [str(p) for p in exc.problems]}, status_code=422)


async def _store_query(_request: Request, exc: Exception) -> JSONResponse:
    """A query the store refuses (too many points, bad range) is the caller's to fix."""
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("telemetry store unavailable", path=request.url.path, error=str(exc))
    return JSONResponse(
        {"detail": "the telemetry store is unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def install_handlers(app: FastAPI) -> None:
    """Map the ports' exceptions to statuses (the catch-all 500 is in the middleware)."""
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(RuleInvalid, _rule_invalid)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(StoreQueryError, _store_query)
