"""Alert manager: lifecycle, grouping, inhibition, silences, routing, escalation,
durable outbox and notification log, CAP 1.2 output and response figures."""

from hub.alerts.manager import AlertManager
from hub.alerts.routing import RoutesFile, RoutesInvalid, load_routes, parse_routes

__all__ = ["AlertManager", "RoutesFile", "RoutesInvalid", "load_routes", "parse_routes"]
