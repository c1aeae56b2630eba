"""Rule models: one pydantic model per kind, a discriminated union on ``kind``.

Every model forbids unknown fields, so a misspelt key is an error that names
its file, line and key path (see :mod:`hub.rules.loader`), never a silent default.
Durations are stored in milliseconds; in files they are text like ``90s``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator

from hub.durations import parse_duration_ms
from hub.messages import Severity

Op = Literal[">", ">=", "<", "<=", "==", "!="]
SeverityName = Literal["info", "warning", "critical", "emergency"]
#: Longest duration a rule may name; beyond this a timer is almost surely a typo.
MAX_RULE_DURATION_MS = 366 * 86_400_000


def _rule_duration_ms(value: object) -> int:
    # A bare number is refused: is `for: 5` seconds or minutes?
    return parse_duration_ms(value, bare="error", max_ms=MAX_RULE_DURATION_MS)


DurationMs = Annotated[int, BeforeValidator(_rule_duration_ms)]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")]
MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Number = Annotated[float, BeforeValidator(lambda v: float(v) if isinstance(v, bool) else v)]

#: Id of the built-in rule raised by readings flagged out of the plausible range.
SENSOR_FAULT_ID = "sensor-fault"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Which devices a rule applies to; every field optional, shell-style globs allowed."""

    asset_type: str | None = None
    district: str | None = None
    device_id: str | None = None
    # Device labels (from the registry's device metadata) that must all be equal.
    labels: dict[str, str] = Field(default_factory=dict)


class RuleBase(_Strict):
    """Fields every kind shares."""

    id: RuleId
    description: str = ""
    match: Match = Field(default_factory=Match)
    severity: SeverityName
    labels: dict[str, str] = Field(default_factory=dict)
    # How long the condition must hold before the rule fires (0: on the first reading).
    for_ms: DurationMs = Field(0, alias="for")
    # How long the condition must stay clear before a firing rule resolves (off-delay).
    clear_for_ms: DurationMs = Field(0, alias="clear_for")
    enabled: bool = True

    @property
    def severity_level(self) -> Severity:
        """The severity as the ordered enum."""
        return Severity.parse(self.severity)


def _check_clear(op: str, value: float, clear: float | None) -> None:
    if clear is None:
        return
    if op in (">", ">="):
        if clear > value:
            raise ValueError(f"clear ({clear}) must be at or below value ({value}) for op {op}")
    elif op in ("<", "<="):
        if clear < value:
            raise ValueError(f"clear ({clear}) must be at or above value ({value}) for op {op}")
    else:
        raise ValueError(f"clear (hysteresis) needs an ordering op (>, >=, <, <=), not {op}")


class ThresholdRule(RuleBase):
    """``metric op value``; with ``clear``, resolves only once past ``clear`` (hysteresis)."""

    kind: Literal["threshold"]
    metric: MetricName
    op: Op
    value: Number
    clear: Number | None = None

    @model_validator(mode="after")
    def _clear_side(self) -> Self:
        _check_clear(self.op, self.value, self.clear)
        return self


class RateOfChangeRule(RuleBase):
    """Change of ``metric`` within ``window`` (absolute, or percent of the earlier value)."""

    kind: Literal["rate_of_change"]
    metric: MetricName
    window_ms: DurationMs = Field(alias="window", gt=0)
    op: Op
    value: Number
    mode: Literal["absolute", "percent"] = "absolute"
    clear: Number | None = None
    max_samples: int = Field(120, ge=2, le=1000)

    @model_validator(mode="after")
    def _clear_side(self) -> Self:
        _check_clear(self.op, self.value, self.clear)
        return self


class FlatlineRule(RuleBase):
    """``metric`` stuck within ``epsilon`` for ``duration`` (a fouled or frozen sensor)."""

    kind: Literal["flatline"]
    metric: MetricName
    duration_ms: DurationMs = Field(alias="duration", gt=0)
    epsilon: float = Field(0.0, ge=0)
    min_samples: int = Field(3, ge=2)


class NoDataRule(RuleBase):
    """No reading (or none carrying ``metric``) for ``after``, or ``intervals`` x expected."""

    kind: Literal["no_data"]
    metric: MetricName | None = None
    after_ms: DurationMs | None = Field(None, alias="after")
    intervals: float = Field(3.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _one_timeout(self) -> Self:
        if self.after_ms is not None and "intervals" in self.model_fields_set:
            raise ValueError("give either after or intervals, not both")
        if self.after_ms is not None and self.after_ms <= 0:
            raise ValueError("after must be longer than 0")
        return self


class AnomalyRule(RuleBase):
    """Robust rolling statistics: median/MAD z-score over a window, or an EWMA band."""

    kind: Literal["anomaly"]
    metric: MetricName
    method: Literal["mad", "ewma"] = "mad"
    z: float = Field(3.5, gt=0)
    direction: Literal["both", "high", "low"] = "both"
    window_ms: DurationMs | None = Field(None, alias="window")
    max_samples: int = Field(60, ge=5, le=500)
    min_samples: int = Field(10, ge=3)
    warmup_ms: DurationMs = Field(0, alias="warmup")
    alpha: float = Field(0.1, gt=0, le=1)
    # Smallest absolute deviation that counts, so a very steady signal does not
    # fire on noise once its spread (MAD or EWMA deviation) is near zero.
    min_deviation: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.min_samples > self.max_samples:
            raise ValueError(
                f"min_samples ({self.min_samples}) exceeds max_samples ({self.max_samples})"
            )
        if self.method == "mad" and "alpha" in self.model_fields_set:
            raise ValueError("alpha applies to method ewma only")
        if self.method == "ewma" and self.window_ms is not None:
            raise ValueError("window applies to method mad only (ewma uses alpha)")
        return self


class Condition(_Strict):
    """One condition of a device composite: the value, or its change over ``window``."""

    metric: MetricName
    op: Op
    value: Number
    of: Literal["value", "change", "change_pct"] = "value"
    window_ms: DurationMs | None = Field(None, alias="window")

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.of == "value" and self.window_ms is not None:
            raise ValueError("window applies to of: change or change_pct only")
        if self.of != "value" and not self.window_ms:
            raise ValueError(f"of: {self.of} needs a window (e.g. 1m)")
        return self


class AreaSpec(_Strict):
    """At least ``at_least`` devices of one district in ``state`` of rule ``rule``."""

    rule: RuleId
    state: Literal["firing", "pending"] = "firing"
    at_least: int = Field(ge=1, le=100_000)


class CompositeRule(RuleBase):
    """``all``/``any`` conditions on one device's metrics, or an ``area`` rule over a district."""

    kind: Literal["composite"]
    all_: list[Condition] | None = Field(None, alias="all", min_length=1, max_length=16)
    any_: list[Condition] | None = Field(None, alias="any", min_length=1, max_length=16)
    area: AreaSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n, v in (("all", self.all_), ("any", self.any_), ("area", self.area)) if v]
        if len(given) != 1:
            raise ValueError(
                "a composite rule needs exactly one of all, any (device conditions) or area"
                + (f"; got {', '.join(given)}" if given else "")
            )
        if self.area is not None and self.area.rule == self.id:
            raise ValueError("an area rule cannot count its own state")
        return self

    @property
    def conditions(self) -> list[Condition]:
        """The device conditions (empty for an area rule)."""
        return self.all_ or self.any_ or []


class CitizenReportsRule(RuleBase):
    """At least ``min_reports`` citizen reports of ``service`` within ``radius_m`` of each
    other and within ``window``: citizens as sensors (docs/reports.md).

    Its alerts are area alerts (source ``_area``) of the district the reports are in,
    with the reports in their explanation. ``match`` may only name a district.
    """

    kind: Literal["citizen_reports"]
    service: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    min_reports: int = Field(ge=2, le=1000)
    radius_m: float = Field(gt=0, le=50_000)
    window_ms: DurationMs = Field(alias="window", gt=0)

    @model_validator(mode="after")
    def _district_only(self) -> Self:
        m = self.match
        if m.asset_type is not None or m.device_id is not None or m.labels:
            raise ValueError(
                "match of a citizen_reports rule may name a district only (reports come"
                " from citizens, not devices; the service says the asset type)"
            )
        return self


class SensorFaultRule(RuleBase):
    """Fires while a device's readings are flagged out of the plausible range."""

    kind: Literal["sensor_fault"]


Rule = Annotated[
    ThresholdRule
    | RateOfChangeRule
    | FlatlineRule
    | NoDataRule
    | AnomalyRule
    | CompositeRule
    | CitizenReportsRule
    | SensorFaultRule,
    Field(discriminator="kind"),
]
RuleModel = (
    ThresholdRule
    | RateOfChangeRule
    | FlatlineRule
    | NoDataRule
    | AnomalyRule
    | CompositeRule
    | CitizenReportsRule
    | SensorFaultRule
)
RULE_ADAPTER: TypeAdapter[RuleModel] = TypeAdapter(Rule)
KINDS = (
    "threshold",
    "rate_of_change",
    "flatline",
    "no_data",
    "anomaly",
    "composite",
    "citizen_reports",
    "sensor_fault",
)

#: The built-in sensor-fault rule; a rule file may redefine ``sensor-fault`` to override it.
DEFAULT_SENSOR_FAULT = SensorFaultRule.model_validate(
    {
        "id": SENSOR_FAULT_ID,
        "kind": "sensor_fault",
        "severity": "warning",
        "description": "Readings outside the metric's plausible range: check the sensor",
        "labels": {"team": "maintenance"},
    }
)


def rule_version(rule: RuleModel) -> str:
    """Content hash of the rule's meaning (comments and key order do not change it)."""
    doc: Any = rule.model_dump(mode="json", by_alias=True)
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:12]
