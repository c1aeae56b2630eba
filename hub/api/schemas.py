"""Public request and response models of the API (separate from the internal port types)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hub.ingest.topics import RESERVED_DISTRICTS

DISTRICT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
LABEL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

SeverityName = Literal["info", "warning", "critical", "emergency"]
#: A district's or asset type's worst current condition: ``ok`` or the worst active severity.
Condition = Literal["ok", "info", "warning", "critical", "emergency"]
AlertState = Literal["firing", "acknowledged", "resolved", "active"]
DeviceStatus = Literal["online", "offline", "unknown"]
MetricValueOut = bool | int | float

#: Longest free-text comment accepted on alerts and silences.
MAX_COMMENT = 2000


class _In(BaseModel):
    # strict: no silent coercion of request bodies (``false`` is not a longitude)
    model_config = ConfigDict(extra="forbid", strict=True)


class HealthOut(BaseModel):
    """The hub's health; 503 when not ready."""

    ok: bool
    ready: bool
    checks: dict[str, Any]


class WhoAmI(BaseModel):
    """The key making the request."""

    id: str
    name: str
    role: str
    scopes: dict[str, list[str]]
    expires_ms: int | None = None
    purpose: str = ""


class KeyOut(BaseModel):
    """An API key as admins list it (never its secret)."""

    id: str
    name: str
    role: str
    scopes: dict[str, list[str]]
    state: Literal["active", "expired", "revoked"]
    created_ms: int
    last_used_ms: int | None
    expires_ms: int | None
    revoked_ms: int | None
    purpose: str


ReportStatus = Literal["open", "acknowledged", "in_progress", "closed"]


class ReportLinkOut(BaseModel):
    """A report's link to an alert (and its incident) it plausibly belongs to."""

    alert_id: str
    incident_id: str | None
    rule_id: str
    reason: str
    distance_m: float | None
    linked_ms: int


class ReportOut(BaseModel):
    """A citizen report (never the reporter's contact data: ``has_contact`` says whether
    there is any, ``GET /reports/{id}/contact`` reads it, audited)."""

    id: int
    service_code: str
    service_name: str
    status: ReportStatus
    #: What the public sees (Open311): ``closed`` or ``open``.
    public_status: Literal["open", "closed"]
    status_notes: str
    description: str
    address: str | None
    address_id: str | None
    lat: float | None
    lon: float | None
    media_url: str | None
    attributes: dict[str, list[str]]
    district: str
    asset_type: str | None
    requested_ms: int
    updated_ms: int
    merged_into: int | None
    has_contact: bool
    links: list[ReportLinkOut]


class ReportNoteOut(BaseModel):
    """One step of a report's handling."""

    ts_ms: int
    status: str
    note: str
    actor: str


class ReportDetail(ReportOut):
    """One report with its handling history."""

    history: list[ReportNoteOut]


class ReportContactOut(BaseModel):
    """The reporter's contact data (every read is in the audit log)."""

    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None


class ReportStatusIn(_In):
    """A new status for a report, with the note the public reads (Open311 status_notes)."""

    status: ReportStatus
    note: Annotated[str, Field(max_length=MAX_COMMENT)] = ""


class ReportMergeIn(_In):
    """Close this report as a duplicate of ``into``."""

    into: Annotated[int, Field(ge=1, le=2**62)]
    note: Annotated[str, Field(max_length=MAX_COMMENT)] = ""


class ReportHintOut(BaseModel):
    """Reports keep arriving near a device that reads normal, or where no device is."""

    kind: Literal["device", "district"]
    district: str
    asset_type: str
    device_id: str | None
    service_code: str
    reports: list[int]
    first_ms: int
    last_ms: int
    summary: str


class ReportServiceOut(BaseModel):
    """A service citizens may report, and the asset type it concerns."""

    service_code: str
    service_name: str
    group: str
    asset_type: str | None
    problem: str


class DeviceSummary(BaseModel):
    """A device in a list."""

    device_id: str
    district: str
    asset_type: str
    status: str
    last_seen_ms: int | None
    stale: bool
    provisioned: bool


class DeviceDetail(DeviceSummary):
    """One device with its latest values (metrics the key may not read are withheld)."""

    latest: dict[str, MetricValueOut]
    latest_ts_ms: int | None
    withheld_metrics: list[str]
    seq_gaps: int
    seq_duplicates: int
    latitude: float | None
    longitude: float | None
    metadata: dict[str, Any]
    #: Citizen reports keep arriving near this device while it reads normal (docs/reports.md).
    report_hints: list[ReportHintOut] = []


#: Bounds of provisioning metadata (it becomes device labels that rules match on).
MAX_METADATA_ENTRIES = 50
MAX_METADATA_TEXT = 1000

#: JSON Schema of "latitude and longitude: both or neither" (a number needs the other).
_BOTH_COORDINATES: dict[str, Any] = {
    "allOf": [
        {
            "if": {"properties": {a: {"type": "number"}}, "required": [a]},
            "then": {"properties": {b: {"type": "number"}}, "required": [b]},
        }
        for a, b in (("latitude", "longitude"), ("longitude", "latitude"))
    ]
}


def _not_reserved(district: str) -> str:
    if district in RESERVED_DISTRICTS:
        raise ValueError(
            f"{district!r} is reserved for the hub's alert topics; it is not a district"
        )
    return district


#: A district a device may be provisioned in: the contract's names less the reserved ones
#: (``alerts`` is the hub's own topic branch, CONTRACT §1; ingest refuses it the same way).
ProvisionedDistrict = Annotated[
    str,
    Field(
        pattern=DISTRICT_PATTERN,
        json_schema_extra={"not": {"enum": sorted(RESERVED_DISTRICTS)}},
    ),
    AfterValidator(_not_reserved),
]


class DeviceUpdate(_In):
    """Provisioning data of a device (admins); ``asset_type`` must be in the device catalog."""

    model_config = ConfigDict(json_schema_extra=_BOTH_COORDINATES)

    district: ProvisionedDistrict
    asset_type: Annotated[str, Field(pattern=DISTRICT_PATTERN)]
    latitude: Annotated[float | None, Field(ge=-90, le=90)] = None
    longitude: Annotated[float | None, Field(ge=-180, le=180)] = None
    metadata: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=64)],
            Annotated[str, Field(max_length=MAX_METADATA_TEXT)] | int | float | bool | None,
        ],
        Field(max_length=MAX_METADATA_ENTRIES),
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _both_coordinates(self) -> DeviceUpdate:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude: give both or neither")
        return self


class DeviceCreate(DeviceUpdate):
    """A new device (admins)."""

    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]


class TelemetryPoint(BaseModel):
    """One value (a bucket's aggregate when ``every`` was given)."""

    ts_ms: int
    metric: str
    value: float | None


class TelemetryOut(BaseModel):
    """Points of one device over ``[start_ms, end_ms)``; metrics the key may not read are
    left out and named in ``withheld_metrics``."""

    device_id: str
    asset_type: str
    start_ms: int
    end_ms: int
    every_ms: int | None
    agg: str | None
    metrics: list[str] | None
    points: list[TelemetryPoint]
    withheld_metrics: list[str]


class AreaStatus(BaseModel):
    """Devices and active alerts of a district, or of one asset type in it."""

    devices: int
    online: int
    offline: int
    unknown: int
    stale: int
    active_alerts: dict[str, int]
    worst: Condition


class AssetTypeStatus(AreaStatus):
    """One cell of the status board."""

    asset_type: str


class DistrictStatus(AreaStatus):
    """One row of the status board."""

    district: str
    asset_types: list[AssetTypeStatus]


class AlertOut(BaseModel):
    """An alert in a list; where it carries values of metrics the key may not read, its
    summary says they are withheld and ``withheld_metrics`` names them."""

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
    labels: dict[str, str]
    started_ms: int
    updated_ms: int
    acknowledged_ms: int | None
    resolved_ms: int | None
    silenced: bool
    incident_id: str | None
    reopened_from: str | None
    withheld_metrics: list[str]
    #: Why ``silenced``: ``silence:<id>``, ``maintenance:<name>`` or ``inhibited:<alert id>``.
    muted_by: str | None = None
    #: Why an operator resolved it (fixed, false_alarm, duplicate, maintenance, other);
    #: null while open or when the rule resolved it.
    resolution: str | None = None


class TransitionOut(BaseModel):
    """One step of an alert's timeline."""

    ts_ms: int
    status: str
    actor: str
    comment: str
    detail: dict[str, Any]


class AlertDetail(AlertOut):
    """One alert with the explanation of why it fired, its timeline, and the citizen
    reports linked to it or to its incident (or that fired it)."""

    explanation: dict[str, Any]
    timeline: list[TransitionOut]
    reports: list[ReportOut] = []


class CommentIn(_In):
    """An optional note with an acknowledgement or resolution."""

    comment: Annotated[str, Field(max_length=MAX_COMMENT)] = ""


ResolutionReason = Literal["fixed", "false_alarm", "duplicate", "maintenance", "other"]


class ResolveIn(_In):
    """An optional note and the reason of a resolution by hand (default ``other``)."""

    comment: Annotated[str, Field(max_length=MAX_COMMENT)] = ""
    reason: ResolutionReason = "other"


class RequiredCommentIn(_In):
    """A comment on an alert."""

    comment: Annotated[str, Field(min_length=1, max_length=MAX_COMMENT)]


class SilenceOut(BaseModel):
    """A silence; ``active`` is derived from the clock."""

    id: str
    matchers: dict[str, str]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    active: bool


#: Longest silence (maintenance windows longer than this are a policy decision, not a click).
MAX_SILENCE_S = 90 * 86400


class SilenceIn(_In):
    """A new silence: label matchers (``district``, ``asset_type``, ``source``, ``rule_id``,
    ``severity`` or a label a loaded rule sets) and either ``ends_ms`` or ``duration_s``;
    ``starts_ms`` defaults to now."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"properties": {name: {"type": "integer"}}, "required": [name]}
                for name in ("ends_ms", "duration_s")
            ]
        }
    )

    matchers: Annotated[
        dict[
            Annotated[str, Field(pattern=LABEL_PATTERN)],
            Annotated[str, Field(min_length=1, max_length=256)],
        ],
        Field(
            min_length=1,
            max_length=20,
            json_schema_extra={"propertyNames": {"pattern": LABEL_PATTERN}},
        ),
    ]
    starts_ms: Annotated[int | None, Field(ge=0, le=10**14)] = None
    ends_ms: Annotated[int | None, Field(ge=0, le=10**14)] = None
    duration_s: Annotated[int | None, Field(ge=1, le=MAX_SILENCE_S)] = None
    comment: Annotated[str, Field(min_length=1, max_length=MAX_COMMENT)]

    @model_validator(mode="after")
    def _one_end(self) -> SilenceIn:
        if (self.ends_ms is None) == (self.duration_s is None):
            raise ValueError("give exactly one of ends_ms and duration_s")
        return self


class RuleOut(BaseModel):
    """A loaded rule with its current firing / pending counts."""

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


#: Largest rule document accepted (a rule is a few lines of YAML).
MAX_RULE_BYTES = 64 * 1024


class RuleIn(_In):
    """One rule as a YAML mapping, exactly as it would appear in a rule file's list."""

    source_yaml: Annotated[str, Field(min_length=1, max_length=MAX_RULE_BYTES)]


class RuleProblemOut(BaseModel):
    """A current load error of a rule file."""

    file: str
    line: int
    message: str


class DeadLetterOut(BaseModel):
    """A rejected message or reading."""

    id: int
    received_ms: int
    topic: str
    reason: str
    detail: str
    payload: str
    device_id: str | None
    district: str | None


class DeadLettersOut(BaseModel):
    """Recent rejections, newest first, and how many are kept per reason."""

    counts_by_reason: dict[str, int]
    items: list[DeadLetterOut]


class AuditOut(BaseModel):
    """One audited request."""

    id: int
    ts_ms: int
    key_id: str | None
    key_name: str | None
    role: str | None
    client: str
    method: str
    path: str
    query: str
    status: int
    rows: int | None


class ErrorOut(BaseModel):
    """Every error: ``detail`` says what went wrong."""

    detail: Any


class IndicatorOut(BaseModel):
    """An indicator definition (CONTRACT §8)."""

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
    measure: dict[str, Any]
    ratio: bool
    per_device: bool


class IndicatorPointOut(BaseModel):
    """One value: numerator and denominator where the value is a ratio."""

    period_start_ms: int
    district: str | None
    asset_type: str | None
    value: float | None
    numerator: float | None
    denominator: float | None


class IndicatorSeriesOut(BaseModel):
    """An indicator's values per period and group (CONTRACT §8)."""

    id: str
    unit: str
    points: list[IndicatorPointOut]


class DeviceFigureOut(BaseModel):
    """One device's value over the whole range."""

    device_id: str
    district: str
    asset_type: str
    value: float | None
    numerator: float | None
    denominator: float | None


class IndicatorDevicesOut(BaseModel):
    """The devices of a query, worst first (a district's drill-down)."""

    id: str
    unit: str
    start_ms: int
    end_ms: int
    devices: list[DeviceFigureOut]


class AuditReportRowOut(BaseModel):
    """Requests of one key on one resource kind and district in one period, or what open
    data published of one dataset (``action`` ``publish``)."""

    period_start_ms: int
    key_id: str | None
    key_name: str | None
    role: str | None
    resource: str
    district: str | None
    action: Literal["read", "change", "publish"]
    requests: int
    rows: int
    refused: int
    key_purpose: str | None = None
    key_expires_ms: int | None = None
    #: ``publish`` rows: aggregate cells withheld because fewer than k devices reported.
    suppressed: int = 0


class AuditReportOut(BaseModel):
    """Who read or changed what, per key, resource kind, district and period."""

    period: Literal["day", "week", "month"]
    start_ms: int
    end_ms: int
    rows: list[AuditReportRowOut]


class ReleaseOut(BaseModel):
    """One entry of the open-data release log."""

    id: int
    ts_ms: int
    kind: Literal["policy", "aggregates", "daily"]
    dataset: str
    period_start_ms: int | None
    period_end_ms: int | None
    rows: int
    suppressed: int
    policy_version: str
    sha256: str
    detail: dict[str, Any]


class OpenDataPolicyOut(BaseModel):
    """The open-data policy in effect: its version and, per asset type, what is published."""

    version: str
    asset_types: dict[str, Any]
