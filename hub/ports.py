"""Read/write interfaces the API and the runtime use to reach the stages.

Each stage implements its port in its own package; ``hub.api`` depends only on
these protocols (and on ``hub.messages``), so the web layer never reaches into a
stage's internals. Public API response models live in ``hub.api.schemas``;
these are internal types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hub.messages import AlertEvent, MetricValue

# --------------------------------------------------------------------------- scopes


@dataclass(frozen=True, slots=True)
class Scope:
    """What a caller may see: ``None`` means every district / asset type."""

    districts: frozenset[str] | None = None
    asset_types: frozenset[str] | None = None

    def allows(self, district: str, asset_type: str) -> bool:
        """True when ``district``/``asset_type`` is inside this scope."""
        return (self.districts is None or district in self.districts) and (
            self.asset_types is None or asset_type in self.asset_types
        )


UNRESTRICTED = Scope()

# --------------------------------------------------------------------------- devices


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the registry knows of one device."""

    device_id: str
    district: str
    asset_type: str
    status: str  # "online" | "offline" | "unknown"
    last_seen_ms: int | None
    latest: Mapping[str, MetricValue]
    latest_ts_ms: int | None
    stale: bool
    seq_gaps: int = 0
    seq_duplicates: int = 0
    latitude: float | None = None
    longitude: float | None = None
    provisioned: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: When the registry first knew the device (provisioned, or first heard from).
    created_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """How many devices of one district and asset type are in each state."""

    devices: int = 0
    online: int = 0
    offline: int = 0
    stale: int = 0

    @property
    def unknown(self) -> int:
        """Devices neither online nor offline (never sent a status nor a reading)."""
        return self.devices - self.online - self.offline


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Filters for listing devices."""

    district: str | None = None
    asset_type: str | None = None
    status: str | None = None
    stale: bool | None = None
    limit: int = 1000
    offset: int = 0


class DeviceRegistryPort(Protocol):
    """Device state for the API (registry package implements it)."""

    def list_devices(self, flt: DeviceFilter, scope: Scope) -> list[DeviceInfo]:
        """Devices matching ``flt`` inside ``scope``."""
        ...

    def get_device(self, device_id: str) -> DeviceInfo | None:
        """One device, or None."""
        ...

    def upsert_device(
        self,
        device_id: str,
        district: str,
        asset_type: str,
        latitude: float | None,
        longitude: float | None,
        metadata: Mapping[str, Any],
    ) -> DeviceInfo:
        """Provision or update a device (admins)."""
        ...

    def delete_device(self, device_id: str) -> bool:
        """Remove a provisioned device; False when unknown."""
        ...

    def districts(self, scope: Scope) -> list[str]:
        """Districts that have devices, inside ``scope``."""
        ...

    def device_counts(
        self, scope: Scope, district: str | None = None
    ) -> dict[tuple[str, str], DeviceCounts]:
        """Device counts per (district, asset type) inside ``scope`` (one district if given)."""
        ...


# --------------------------------------------------------------------------- dead letters


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message or reading as kept for operators."""

    id: int
    received_ms: int
    topic: str
    reason: str
    detail: str
    payload: str
    device_id: str | None
    district: str | None


class DeadLetterPort(Protocol):
    """Recent rejections (ingest package implements it)."""

    def recent(
        self, *, reason: str | None, device_id: str | None, limit: int, scope: Scope
    ) -> list[DeadLetter]:
        """Newest first."""
        ...

    def counts_by_reason(self) -> dict[str, int]:
        """Rejections kept, per reason."""
        ...


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Filters for listing alerts."""

    state: str | None = None  # firing | acknowledged | resolved | active (= not resolved)
    district: str | None = None
    severity: str | None = None
    asset_type: str | None = None
    rule_id: str | None = None
    limit: int = 500
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of an alert's timeline."""

    ts_ms: int
    status: str  # firing | updated | acknowledged | resolved | commented | notified | escalated
    actor: str
    comment: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


#: Labels every alert carries besides its rule's ``labels`` (what silences, routes and
#: inhibit rules can match on; hub.alerts.lifecycle.match_labels builds them).
ALERT_IDENTITY_LABELS = ("district", "asset_type", "severity", "rule_id", "source")


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert as stored, with its explanation."""

    id: str
    rule_id: str
    rule_version: str
    status: str
    severity: str
    district: str
    asset_type: str
    source: str
    summary: str
    description: str
    labels: Mapping[str, str]
    explanation: Mapping[str, Any]
    started_ms: int
    updated_ms: int
    acknowledged_ms: int | None
    resolved_ms: int | None
    silenced: bool = False
    incident_id: str | None = None
    reopened_from: str | None = None
    #: Why ``silenced``: ``silence:<id>``, ``maintenance:<name>`` or ``inhibited:<alert id>``.
    muted_by: str | None = None
    #: Why an operator resolved it (RESOLUTION_REASONS); None while open or when the rule did.
    resolution: str | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """Matchers plus a time range; active when now is within it (derived, not stored)."""

    id: str
    matchers: Mapping[str, str]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str


#: Reasons an operator gives when resolving an alert by hand (``resolution``); alerts
#: the rule resolved itself have none. ``false_alarm`` feeds each rule's false-alarm rate.
RESOLUTION_REASONS = ("fixed", "false_alarm", "duplicate", "maintenance", "other")
#: The reason of a hand resolution that names none.
DEFAULT_RESOLUTION = "other"


@dataclass(frozen=True, slots=True)
class ResponseFact:
    """One alert's lifecycle as the response indicators count it.

    ``responded_ms`` is the first human action: the acknowledgement, or a resolution
    by an operator when nobody acknowledged first. ``muted_ms`` is how long the alert
    was open while a silence or maintenance window muted it (up to now for an open
    alert); ``ack_target_ms`` the target time of its severity (routing file), if any.
    """

    alert_id: str
    rule_id: str
    severity: str
    district: str
    asset_type: str
    source: str
    started_ms: int
    acknowledged_ms: int | None
    responded_ms: int | None
    resolved_ms: int | None
    resolved_by: str | None
    resolution: str | None
    escalations: int
    muted_ms: int
    ack_target_ms: int | None


#: Matcher keys that name devices: a silence or maintenance window whose matchers are
#: all among these takes the devices it matches out of service (indicators do not
#: expect their readings meanwhile); one that also names a rule, a severity or
#: another label only mutes alerts.
DEVICE_MATCHER_KEYS = frozenset({"district", "asset_type", "source", "device_id"})


@dataclass(frozen=True, slots=True)
class MaintenancePeriod:
    """A silence, or one occurrence of a recurring maintenance window: who, and when."""

    matchers: Mapping[str, str | list[str]]
    starts_ms: int
    ends_ms: int
    origin: str  # silence:<id> or maintenance:<name>

    @property
    def device_wide(self) -> bool:
        """True when the matchers name devices only (see DEVICE_MATCHER_KEYS)."""
        return bool(self.matchers) and set(self.matchers) <= DEVICE_MATCHER_KEYS


#: How one caller may see an alert and its timeline (the API withholds values by role);
#: renderers that build documents from an alert (CAP) apply it first.
AlertView = Callable[[AlertRecord, Sequence[Transition]], tuple[AlertRecord, Sequence[Transition]]]


class NotFound(Exception):
    """The thing asked for does not exist."""


class Conflict(Exception):
    """The change is not possible in the thing's current state (e.g. ack a resolved alert)."""


class DeliveryError(Exception):
    """A notifier could not deliver; ``retryable`` says whether trying again may help.

    Defined here (not in ``hub.notifiers``) because the alert manager's outbox must
    tell the two cases apart and stage packages do not import each other.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class AlertServicePort(Protocol):
    """Alerts for the API (alerts package implements it)."""

    def list_alerts(self, flt: AlertFilter, scope: Scope) -> list[AlertRecord]:
        """Alerts matching ``flt`` inside ``scope``, newest first."""
        ...

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        """One alert, or None."""
        ...

    def timeline(self, alert_id: str) -> list[Transition]:
        """Transitions of one alert, oldest first."""
        ...

    async def acknowledge(self, alert_id: str, actor: str, comment: str) -> AlertRecord:
        """Acknowledge; raises NotFound / Conflict."""
        ...

    async def resolve(
        self, alert_id: str, actor: str, comment: str, reason: str = DEFAULT_RESOLUTION
    ) -> AlertRecord:
        """Resolve by hand, saying why (one of RESOLUTION_REASONS); raises NotFound / Conflict."""
        ...

    async def comment(self, alert_id: str, actor: str, comment: str) -> AlertRecord:
        """Add a comment to the timeline; raises NotFound."""
        ...

    def list_silences(self, include_expired: bool) -> list[Silence]:
        """Silences, newest first."""
        ...

    def create_silence(
        self, matchers: Mapping[str, str], starts_ms: int, ends_ms: int, actor: str, comment: str
    ) -> Silence:
        """Create a silence / maintenance window."""
        ...

    def expire_silence(self, silence_id: str, actor: str) -> Silence:
        """End a silence now; raises NotFound."""
        ...

    def silence_preview(self, matchers: Mapping[str, str], scope: Scope) -> list[AlertRecord]:
        """Open alerts inside ``scope`` that a silence with ``matchers`` would mute now."""
        ...

    def cap_xml(self, alert_id: str, *, view: AlertView | None = None) -> str:
        """The alert as an OASIS CAP 1.2 document, built from ``view`` of it; raises NotFound."""
        ...

    def cap_feed(self, scope: Scope, base_url: str, *, view: AlertView | None = None) -> str:
        """Atom feed of current CAP messages, each entry built from ``view`` of its alert."""
        ...

    def response_figures(self, flt: AlertFilter, scope: Scope) -> dict[str, Any]:
        """Time to acknowledge / resolve figures grouped by district, asset type, severity."""
        ...

    def response_facts(self, start_ms: int, end_ms: int, scope: Scope) -> list[ResponseFact]:
        """The lifecycle of every alert inside ``scope`` opened in ``[start_ms, end_ms)``."""
        ...

    def maintenance_periods(self, start_ms: int, end_ms: int) -> list[MaintenancePeriod]:
        """Silences and maintenance window occurrences overlapping ``[start_ms, end_ms)``."""
        ...


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One problem in a rule file: where and what."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class RuleSummary:
    """A loaded rule as the API lists it."""

    id: str
    kind: str
    version: str
    file: str
    managed: bool
    enabled: bool
    severity: str
    description: str
    source_yaml: str
    firing: int
    pending: int
    #: The labels the rule copies onto its alerts (silences and routes match on them).
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ThresholdLine:
    """A fixed level a rule compares one metric of a device against (for chart lines)."""

    rule_id: str
    metric: str
    op: str
    value: float
    clear: float | None
    severity: str


class RuleInvalid(Exception):
    """A rule document failed validation; ``problems`` say where and why."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


class RuleServicePort(Protocol):
    """Rules for the API (rules package implements it).

    Writes go to the managed rules folder and are picked up by hot reload; the
    same loader validates them as files, so errors are the same.
    """

    def list_rules(self) -> list[RuleSummary]:
        """Every loaded rule with its current firing/pending counts."""
        ...

    def get_rule(self, rule_id: str) -> RuleSummary | None:
        """One rule, or None."""
        ...

    def create_rule(self, source_yaml: str, actor: str) -> RuleSummary:
        """Add one rule (a YAML mapping); raises RuleInvalid / Conflict (duplicate id)."""
        ...

    def update_rule(self, rule_id: str, source_yaml: str, actor: str) -> RuleSummary:
        """Replace a managed rule; raises NotFound / RuleInvalid / Conflict (not managed)."""
        ...

    def delete_rule(self, rule_id: str, actor: str) -> None:
        """Remove a managed rule; raises NotFound / Conflict (not managed)."""
        ...

    def problems(self) -> list[RuleProblem]:
        """Current load errors (broken files keep their previous rules)."""
        ...

    def thresholds(self, district: str, asset_type: str, device_id: str) -> list[ThresholdLine]:
        """Fixed levels of the enabled rules matching the device (threshold rules and
        composite conditions on a value)."""
        ...

    def changes(self, limit: int) -> list[dict[str, Any]]:
        """Recorded rule changes: author, time, rule id, diff."""
        ...


# --------------------------------------------------------------------------- citizen reports

#: Statuses an operator may give a report; the public (Open311) sees ``closed`` as
#: closed and every other one as ``open``.
REPORT_STATUSES = ("open", "acknowledged", "in_progress", "closed")


@dataclass(frozen=True, slots=True)
class ServiceValue:
    """One option of a list attribute (Open311 ``value``: ``key`` and ``name``)."""

    key: str
    name: str


@dataclass(frozen=True, slots=True)
class ServiceAttribute:
    """One attribute of a service definition (Open311 ``attribute``)."""

    code: str
    datatype: str  # string | number | datetime | text | singlevaluelist | multivaluelist
    required: bool
    description: str
    order: int
    variable: bool = True
    datatype_description: str = ""
    values: tuple[ServiceValue, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A service citizens may report (Open311 ``service``), and what it means to the hub."""

    service_code: str
    service_name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    type: str  # realtime | batch
    asset_type: str | None
    problem: str
    agency_responsible: str = ""
    service_notice: str = ""
    attributes: tuple[ServiceAttribute, ...] = ()

    @property
    def metadata(self) -> bool:
        """True when the service has attributes (Open311: call the service definition)."""
        return bool(self.attributes)


@dataclass(frozen=True, slots=True)
class ReportSubmission:
    """A report as a citizen's app sent it (Open311 POST requests), fields bounded."""

    service_code: str
    lat: float | None = None
    lon: float | None = None
    address_string: str | None = None
    address_id: str | None = None
    description: str = ""
    media_url: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportLink:
    """A report's link to an alert (and its incident) it plausibly belongs to."""

    alert_id: str
    incident_id: str | None
    rule_id: str
    reason: str
    distance_m: float | None
    linked_ms: int


@dataclass(frozen=True, slots=True)
class ReportNote:
    """One step of a report's handling: a status given with a public note, or a merge."""

    ts_ms: int
    status: str
    note: str
    actor: str


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A citizen report as kept, without the reporter's contact data (see ReportContact)."""

    id: int
    service_code: str
    service_name: str
    status: str
    status_notes: str
    description: str
    address: str | None
    address_id: str | None
    lat: float | None
    lon: float | None
    media_url: str | None
    attributes: Mapping[str, tuple[str, ...]]
    district: str
    asset_type: str | None
    requested_ms: int
    updated_ms: int
    token: str | None
    merged_into: int | None
    has_contact: bool
    links: tuple[ReportLink, ...] = ()

    @property
    def public_status(self) -> str:
        """Open311's status: ``closed`` or ``open``."""
        return "closed" if self.status == "closed" else "open"


@dataclass(frozen=True, slots=True)
class ReportContact:
    """The reporter's contact data (kept for the retention period; every read is audited)."""

    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Filters for listing reports; ``statuses`` are the hub's (REPORT_STATUSES)."""

    ids: tuple[int, ...] | None = None
    service_codes: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    district: str | None = None
    asset_type: str | None = None
    incident_id: str | None = None
    alert_id: str | None = None
    limit: int = 1000
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ReportHint:
    """Reports keep arriving where the sensors read normal: a device or a district to check.

    ``kind`` is ``device`` (the reports are near ``device_id``, which has no open
    alert) or ``district`` (no device of the asset type is near them).
    """

    kind: str
    district: str
    asset_type: str
    device_id: str | None
    service_code: str
    reports: tuple[int, ...]
    first_ms: int
    last_ms: int
    summary: str


class ReportInvalid(ValueError):
    """A report that cannot be accepted; the message says which field and why."""


class ReportServicePort(Protocol):
    """Citizen reports for the API (the reports package implements it)."""

    def services(self) -> list[ServiceInfo]:
        """Every service citizens may report, in the file's order."""
        ...

    def service(self, service_code: str) -> ServiceInfo | None:
        """One service, or None."""
        ...

    async def submit(self, submission: ReportSubmission) -> ReportRecord:
        """Accept, place, store and link a report; raises ReportInvalid / NotFound (service)."""
        ...

    def list_reports(self, flt: ReportFilter, scope: Scope) -> list[ReportRecord]:
        """Reports matching ``flt`` inside ``scope``, newest first."""
        ...

    def get_report(self, report_id: int) -> ReportRecord | None:
        """One report, or None."""
        ...

    def by_token(self, token: str) -> ReportRecord | None:
        """The report a token was given for, or None."""
        ...

    def contact(self, report_id: int) -> ReportContact | None:
        """The reporter's contact data (None: none given, or erased)."""
        ...

    def history(self, report_id: int) -> list[ReportNote]:
        """The report's handling, oldest first."""
        ...

    async def set_status(self, report_id: int, status: str, note: str, actor: str) -> ReportRecord:
        """Give a report a status with a public note; raises NotFound / Conflict."""
        ...

    async def merge(self, report_id: int, into: int, note: str, actor: str) -> ReportRecord:
        """Close ``report_id`` as a duplicate of ``into``; raises NotFound / Conflict."""
        ...

    def for_alert(self, alert: AlertRecord, scope: Scope) -> list[ReportRecord]:
        """Reports linked to the alert or to its incident, newest first."""
        ...

    def hints(self, scope: Scope, device_id: str | None = None) -> list[ReportHint]:
        """Devices and districts where reports keep arriving while sensors read normal."""
        ...


# --------------------------------------------------------------------------- health and events


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The hub's health (GET /api/v1/health)."""

    ok: bool
    ready: bool
    checks: Mapping[str, Any]


class HealthPort(Protocol):
    """Builds the health report from the live runtime."""

    async def health(self) -> HealthReport:
        """Current health."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceStatusEvent:
    """A device went online / offline / stale (for the live stream)."""

    device_id: str
    district: str
    asset_type: str
    status: str
    ts_ms: int


StreamEvent = AlertEvent | DeviceStatusEvent


class EventStreamPort(Protocol):
    """Live events for ``GET /api/v1/stream`` (the runtime's event bus implements it)."""

    def subscribe(self) -> AsyncIterator[StreamEvent]:
        """Events from now on; a slow subscriber loses the oldest, never blocks others."""
        ...


# --------------------------------------------------------------------------- indicators

#: How indicator points are grouped: per district (the default), per asset type, per
#: district and asset type, or one point for all the caller may see.
IndicatorGrouping = Literal["district", "asset_type", "district_asset_type", "city"]


@dataclass(frozen=True, slots=True)
class IndicatorInfo:
    """An indicator definition as the API lists it (CONTRACT §8)."""

    id: str
    title: str
    unit: str
    description: str
    formula: str
    source: str
    direction: str
    target: float | None
    reference: str | None
    headline: bool
    version: str
    measure: Mapping[str, Any]
    ratio: bool
    per_device: bool


@dataclass(frozen=True, slots=True)
class IndicatorQuery:
    """Which values of one indicator: periods in ``[start_ms, end_ms)``, filters, grouping.

    ``severity`` and ``rule_id`` narrow the alerts of response indicators.
    """

    id: str
    period: Literal["day", "week", "month"]
    start_ms: int
    end_ms: int
    district: str | None = None
    asset_type: str | None = None
    by: IndicatorGrouping = "district"
    severity: str | None = None
    rule_id: str | None = None


@dataclass(frozen=True, slots=True)
class IndicatorPoint:
    """One value (CONTRACT §8): numerator and denominator where the value is a ratio."""

    period_start_ms: int
    district: str | None
    asset_type: str | None
    value: float | None
    numerator: float | None
    denominator: float | None


@dataclass(frozen=True, slots=True)
class DeviceFigure:
    """One device's value of an indicator over a whole query range (drill-down)."""

    device_id: str
    district: str
    asset_type: str
    value: float | None
    numerator: float | None
    denominator: float | None


class IndicatorPort(Protocol):
    """Indicators for the API (the indicators package implements it)."""

    def definitions(self) -> list[IndicatorInfo]:
        """Every loaded definition, in file order."""
        ...

    def definition(self, indicator_id: str) -> IndicatorInfo | None:
        """One definition, or None."""
        ...

    def series(self, query: IndicatorQuery, scope: Scope) -> list[IndicatorPoint]:
        """Values per period and group inside ``scope``; raises NotFound (no such id)
        or ValueError (a query the indicator cannot answer)."""
        ...

    def devices(self, query: IndicatorQuery, scope: Scope, limit: int) -> list[DeviceFigure]:
        """Per-device values over the whole range, worst first; raises NotFound / ValueError."""
        ...
