"""Typed, immutable messages that cross stage boundaries.

The flow (DESIGN.md) is one-way::

    RawMessage -> (Reading | StatusUpdate | Rejection) -> journal
               -> RuleEvent -> AlertEvent -> Notification

Every stage package imports this module and nothing of the other stages.
Field names are part of the journal's on-disk record format (see ``hub.records``):
add fields with defaults, never rename.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# CONTRACT §1 names. Compiled once; the pure validators in hub.ingest.topics use them.
DISTRICT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ASSET_TYPE_RE = DISTRICT_RE
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
METRIC_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

#: Source name used for area-wide alerts (CONTRACT §1).
AREA_SOURCE = "_area"

MetricValue = float | int | bool


class Severity(enum.IntEnum):
    """Alert severity, ordered: info < warning < critical < emergency."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2
    EMERGENCY = 3

    @classmethod
    def parse(cls, name: str) -> Severity:
        """Return the severity called ``name`` (case-insensitive)."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {name!r}; expected one of info, warning, critical, emergency"
            ) from None

    @property
    def label(self) -> str:
        """The lower-case name used in files, payloads and the API."""
        return _SEVERITY_LABELS[self]


#: Severity labels by value: ``label`` is read for every alert event and payload,
#: and the enum's ``name`` property is slow on Python 3.11.
_SEVERITY_LABELS = tuple(s.name.lower() for s in Severity)


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """Identity of a device as it appears in its topic."""

    district: str
    asset_type: str
    device_id: str


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One MQTT message as received, before any parsing.

    ``mid`` is the broker packet id to acknowledge (0 for QoS 0), ``received_ms``
    the hub's receive time in epoch milliseconds.
    """

    topic: str
    payload: bytes
    received_ms: int
    mid: int = 0
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated reading of one device at one instant (CONTRACT §2-3).

    ``quality`` is ``"ok"`` or ``"out_of_range"``, set from the device catalog
    before the journal when a value is outside its metric's physically plausible
    range; ``out_of_range`` names those metrics. Such readings are stored (with a
    ``quality`` field) but raise a sensor-fault condition instead of an emergency.
    """

    district: str
    asset_type: str
    device_id: str
    ts_ms: int
    metrics: Mapping[str, MetricValue]
    seq: int | None = None
    received_ms: int = 0
    quality: str = "ok"
    out_of_range: tuple[str, ...] = ()

    @property
    def key(self) -> DeviceKey:
        """The device this reading belongs to."""
        return DeviceKey(self.district, self.asset_type, self.device_id)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A device's birth or last-will message (CONTRACT §1 status topic)."""

    district: str
    asset_type: str
    device_id: str
    state: Literal["online", "offline"]
    ts_ms: int
    received_ms: int = 0
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def key(self) -> DeviceKey:
        """The device this status belongs to."""
        return DeviceKey(self.district, self.asset_type, self.device_id)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message, or one reading of a batch, that the hub refused.

    ``reason`` is a short stable code (``bad_topic``, ``invalid_json``,
    ``oversize``, ``bad_metric``...) used as a metric label; ``detail`` is the
    human sentence; ``payload`` is truncated to a bounded size by the decoder.
    """

    topic: str
    reason: str
    detail: str
    payload: bytes
    received_ms: int
    device_id: str | None = None
    district: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a rule changed state: what decided it, in data and in one sentence."""

    summary: str
    threshold: float | None = None
    observed: Mapping[str, float] = field(default_factory=dict)
    readings: tuple[tuple[int, float], ...] = ()
    #: Citizen reports that decided it (``citizen_reports`` rules): their request ids.
    reports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CitizenReport:
    """A citizen's report as the rules see it (Open311 service request, hub.reports).

    ``district`` is where the report was placed (docs/reports.md), ``asset_type`` the
    one its service maps to (empty when none); ``lat``/``lon`` are None for a report
    given by address only, which no radius can count.
    """

    report_id: str
    service_code: str
    district: str
    asset_type: str
    ts_ms: int
    lat: float | None = None
    lon: float | None = None


class RuleState(enum.StrEnum):
    """Per-series state of a rule (Prometheus alerting-rule lifecycle)."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """A rule's state change for one source (a device, or ``_area`` of a district).

    Emitted by the rule engine; consumed by the alert manager. Only transitions
    to ``FIRING`` and ``RESOLVED`` (and ``PENDING`` for visibility) are emitted.
    ``reading_received_ms`` is the hub receive time of the reading that caused
    the change (0 for timer-driven changes), used for latency accounting.
    """

    rule_id: str
    rule_version: str
    state: RuleState
    severity: Severity
    district: str
    asset_type: str
    source: str
    ts_ms: int
    explanation: Explanation
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    reading_received_ms: int = 0


class AlertStatus(enum.StrEnum):
    """Lifecycle of an alert."""

    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert's transition, as published to responders and the live stream."""

    alert_id: str
    rule_id: str
    status: AlertStatus
    severity: Severity
    district: str
    asset_type: str
    source: str
    ts_ms: int
    summary: str
    labels: Mapping[str, str] = field(default_factory=dict)
    actor: str = "hub"
    comment: str = ""
    reopened_from: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one receiver, as queued in the durable outbox."""

    notification_id: str
    receiver: str
    alert_id: str
    payload: Mapping[str, object]
    created_ms: int
    attempt: int = 0
