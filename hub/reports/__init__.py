"""Citizen reports: Open311 GeoReport v2 service requests, linked to what the sensors see.

The package keeps the reports (``store``), reads the services citizens may report
(``services``), and accepts, places, links and hands reports to the rules
(``service``). The HTTP faces are ``hub.api.routes.open311`` (public, the standard)
and ``hub.api.routes.reports`` (operators). docs/reports.md tells the whole story.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from pathlib import Path

from hub.clock import Clock
from hub.logging import get_logger
from hub.ports import ServiceInfo
from hub.reports.service import AlertSource, DeviceSource, ReportService, check_attributes
from hub.reports.services import SERVICES_FILE, load_services
from hub.reports.store import ReportStore, SqliteReportStore
from hub.settings import ConfigError, ReportsSettings
from hub.yamlfile import FileProblem

log = get_logger(__name__)

__all__ = [
    "SERVICES_FILE",
    "ReportService",
    "ReportStore",
    "SqliteReportStore",
    "check_attributes",
    "load_services",
    "open_reports",
    "services_of",
]


def services_of(settings: ReportsSettings, asset_types: Collection[str]) -> list[ServiceInfo]:
    """The services of ``settings.services_path`` (none, said in the log, when it does not
    exist); raises ConfigError with ``file:line: message`` lines for a broken file."""
    path = Path(settings.services_path)
    if not path.exists():
        log.warning(
            "no services file: citizens cannot report anything (HUB_REPORTS__SERVICES_PATH)",
            path=str(path.resolve()),
        )
        return []
    try:
        return load_services(path, asset_types)
    except FileProblem as exc:
        raise ConfigError("\n".join(exc.messages)) from exc


def open_reports(
    settings: ReportsSettings,
    conn: sqlite3.Connection,
    *,
    asset_types: Collection[str],
    clock: Clock,
    alerts: AlertSource,
    devices: DeviceSource,
    devices_version: Callable[[], int] | None = None,
) -> ReportService:
    """The report service over the state database ``conn`` and the configured services."""
    return ReportService(
        settings,
        SqliteReportStore(conn),
        services_of(settings, asset_types),
        clock=clock,
        alerts=alerts,
        devices=devices,
        devices_version=devices_version,
    )
