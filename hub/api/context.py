"""What the API is handed by the runtime: settings, clock, state DB and the stage ports."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from hub.catalog import Catalog
from hub.clock import Clock
from hub.opendata.service import OpenData
from hub.ports import (
    AlertServicePort,
    DeadLetterPort,
    DeviceRegistryPort,
    EventStreamPort,
    HealthPort,
    IndicatorPort,
    ReportServicePort,
    RuleServicePort,
)
from hub.settings import Settings
from hub.store.base import TelemetryStore


@dataclass(frozen=True)
class ApiContext:
    """Everything the API reads or writes through; built once by the runtime.

    ``conn`` is the shared state database (``HUB_DATA_DIR/hub.db``); the API keeps
    its keys and audit log there (components ``api_keys`` and ``audit``).
    ``catalog`` is the device catalog: which asset types exist (provisioning checks
    against it) and how each metric is classified (what a key's role may read).
    ``catalog`` also gives the console each asset type's metrics and units.
    ``reports`` are the citizens' reports (Open311 at ``/open311/v2``, docs/reports.md).
    ``opendata`` is the public open-data tier (None: off, its endpoints are not served).
    """

    settings: Settings
    clock: Clock
    conn: sqlite3.Connection
    registry: DeviceRegistryPort
    store: TelemetryStore
    alerts: AlertServicePort
    rules: RuleServicePort
    dead_letters: DeadLetterPort
    health: HealthPort
    events: EventStreamPort
    catalog: Catalog
    reports: ReportServicePort
    indicators: IndicatorPort | None = None
    opendata: OpenData | None = None
