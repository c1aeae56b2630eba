"""What the API is handed by the runtime: settings, clock, state DB and the stage ports."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from hub.clock import Clock
from hub.ports import (
    AlertServicePort,
    DeadLetterPort,
    DeviceRegistryPort,
    EventStreamPort,
    HealthPort,
    IndicatorPort,
    RuleServicePort,
)
from hub.settings import Settings
from hub.store.base import TelemetryStore


@dataclass(frozen=True)
class ApiContext:
    """Everything the API reads or writes through; built once by the runtime.

    ``conn`` is the shared state database (``HUB_DATA_DIR/hub.db``); the API keeps
    its keys and audit log there (components ``api_keys`` and ``audit``).
    ``catalog_classification(asset_type, metric)`` answers ``public``, ``internal``
    or ``restricted`` (unknown metrics are ``internal``).
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
    catalog_classification: Callable[[str, str], str]
    indicators: IndicatorPort | None = None
