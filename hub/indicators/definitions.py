"""Indicator definitions: YAML files under ``rules/indicators/`` (CONTRACT §8).

Each file holds an ``indicators:`` list; each definition says what the indicator is
for the city (``id``, ``title``, ``unit``, ``description``, a written ``formula``,
the ``source`` it comes from, ``direction``, optional ``target`` and ``reference``)
and how the hub computes it: ``measure`` names one of the hub's computations
(:data:`MEASURES`) with its settings, such as a domain indicator's threshold, so
thresholds live in the definition and not in code. Files are validated like rule
files: every problem is a :class:`hub.ports.RuleProblem` naming ``file:line`` and the
key path (``indicators[3].measure.threshold: ...``), and ``hub rules check`` reports
them. Loading never raises on bad input.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from hub.messages import ASSET_TYPE_RE, METRIC_RE, Severity
from hub.ports import RuleProblem
from hub.yamlfile import (
    YamlMap,
    YamlSeq,
    YamlSyntaxError,
    item_line,
    key_line,
    line_of,
    locate_errors,
    parse_yaml,
    plain,
)

if TYPE_CHECKING:
    from hub.catalog import Catalog

SUFFIXES = (".yaml", ".yml")
#: Built-in ids the city relies on (CONTRACT §8); the shipped files define them.
BUILT_IN_IDS = (
    "data_completeness_pct",
    "device_availability_pct",
    "reading_delay_p95_s",
    "time_to_acknowledge_median_s",
    "time_to_resolve_median_s",
    "ack_within_target_pct",
)

Source = Literal["telemetry", "device_status", "ingest", "alerts"]
Direction = Literal["higher_is_better", "lower_is_better"]

_ID = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
_ASSET = Annotated[str, Field(pattern=f"^{ASSET_TYPE_RE.pattern}$")]
_METRIC = Annotated[str, Field(pattern=f"^{METRIC_RE.pattern}$")]
_RULE_GLOB = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:*?-]+$")]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- measures


class Completeness(_Model):
    """Readings received ÷ readings expected (one per slot of the declared interval)."""

    kind: Literal["completeness"]


class Availability(_Model):
    """Slots in which the device was up ÷ slots expected."""

    kind: Literal["availability"]


class DelayQuantile(_Model):
    """A quantile of arrival time − reading ``ts``, from a histogram of fixed buckets."""

    kind: Literal["delay_quantile"]
    quantile: Annotated[float, Field(gt=0, lt=100)] = 95


class SeqLoss(_Model):
    """Sequence numbers missing ÷ sequence numbers sent (received + missing)."""

    kind: Literal["seq_loss"]


class RejectionRate(_Model):
    """Readings rejected ÷ (accepted + rejected), optionally for some reasons only."""

    kind: Literal["rejection_rate"]
    reasons: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] | None = None


class _AlertFilter(_Model):
    """Which alerts an alert measure looks at (all, by default)."""

    asset_type: _ASSET | None = None
    rules: list[_RULE_GLOB] | None = None
    severities: list[str] | None = None

    @field_validator("severities")
    @classmethod
    def _severities(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [Severity.parse(v).label for v in value]


class AlertCount(_AlertFilter):
    """Alerts opened in the period."""

    kind: Literal["alert_count"]


class TimeToAcknowledge(_AlertFilter):
    """A quantile (median: 50) of the time from opening to acknowledgement."""

    kind: Literal["time_to_acknowledge"]
    quantile: Annotated[float, Field(gt=0, lt=100)] = 50


class TimeToResolve(_AlertFilter):
    """A quantile of the time from opening to resolution."""

    kind: Literal["time_to_resolve"]
    quantile: Annotated[float, Field(gt=0, lt=100)] = 50


class AckWithinTarget(_AlertFilter):
    """Alerts acknowledged within their severity's target ÷ alerts that needed it."""

    kind: Literal["ack_within_target"]


class EscalatedShare(_AlertFilter):
    """Alerts escalated at least once ÷ alerts opened."""

    kind: Literal["escalated_share"]


class MutedTime(_AlertFilter):
    """Hours that open alerts spent muted by a silence or a maintenance window."""

    kind: Literal["muted_time"]


class ResolutionShare(_AlertFilter):
    """Alerts resolved with one of ``reasons`` ÷ alerts resolved."""

    kind: Literal["resolution_share"]
    reasons: Annotated[
        list[Literal["fixed", "false_alarm", "duplicate", "maintenance", "other"]],
        Field(min_length=1),
    ]


class DaysMeanAbove(_Model):
    """Local days on which the district's daily mean of ``metric`` exceeded ``threshold``."""

    kind: Literal["days_mean_above"]
    asset_type: _ASSET
    metric: _METRIC
    threshold: Finite


class HoursAbove(_Model):
    """Device-hours in which ``metric`` exceeded ``threshold`` at least once."""

    kind: Literal["hours_above"]
    asset_type: _ASSET
    metric: _METRIC
    threshold: Finite


Op = Literal[">", ">=", "<", "<=", "==", "!="]


class Condition(_Model):
    """``metric op value`` on one reading."""

    metric: _METRIC
    op: Op
    value: float | bool

    def holds(self, reading_value: float | bool) -> bool:
        """True when ``reading_value op value``."""
        return _compare(reading_value, self.op, self.value)


class HoursOk(_Model):
    """Device-hours in which every reading that meets ``when`` also meets ``ok``
    ÷ device-hours with at least one reading meeting ``when``."""

    kind: Literal["hours_ok"]
    asset_type: _ASSET
    when: Condition | None = None
    ok: Condition


class MetricTotal(_Model):
    """The sum of ``metric`` × ``scale`` over the period's readings: per day with
    readings (``per: day``), or in all (``per: period``)."""

    kind: Literal["metric_total"]
    asset_type: _ASSET
    metric: _METRIC
    scale: Finite = 1.0
    per: Literal["day", "period"] = "day"


Measure = Annotated[
    Completeness
    | Availability
    | DelayQuantile
    | SeqLoss
    | RejectionRate
    | AlertCount
    | TimeToAcknowledge
    | TimeToResolve
    | AckWithinTarget
    | EscalatedShare
    | MutedTime
    | ResolutionShare
    | DaysMeanAbove
    | HoursAbove
    | HoursOk
    | MetricTotal,
    Field(discriminator="kind"),
]

AlertMeasure = (
    AlertCount
    | TimeToAcknowledge
    | TimeToResolve
    | AckWithinTarget
    | EscalatedShare
    | MutedTime
    | ResolutionShare
)
DomainMeasure = DaysMeanAbove | HoursAbove | HoursOk | MetricTotal
#: What each measure is computed from: the ``source`` a definition must name.
MEASURE_SOURCES: dict[str, Source] = {
    "completeness": "telemetry",
    "availability": "device_status",
    "delay_quantile": "ingest",
    "seq_loss": "telemetry",
    "rejection_rate": "ingest",
    "alert_count": "alerts",
    "time_to_acknowledge": "alerts",
    "time_to_resolve": "alerts",
    "ack_within_target": "alerts",
    "escalated_share": "alerts",
    "muted_time": "alerts",
    "resolution_share": "alerts",
    "days_mean_above": "telemetry",
    "hours_above": "telemetry",
    "hours_ok": "telemetry",
    "metric_total": "telemetry",
}
#: Measures whose value is a ratio × 100 (numerator and denominator are shown).
PERCENT_MEASURES = frozenset(
    {
        "completeness",
        "availability",
        "seq_loss",
        "rejection_rate",
        "ack_within_target",
        "escalated_share",
        "resolution_share",
        "hours_ok",
    }
)
#: Measures with a value per device (the drill-down of a district).
DEVICE_MEASURES = frozenset(
    {"completeness", "availability", "seq_loss", "hours_above", "hours_ok", "metric_total"}
)


def _compare(a: float | bool, op: str, b: float | bool) -> bool:
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == "==":
        return a == b
    return a != b


class IndicatorDefinition(_Model):
    """One indicator as its file defines it."""

    id: _ID
    title: Annotated[str, Field(min_length=1, max_length=200)]
    unit: Annotated[str, Field(min_length=1, max_length=32)]
    description: Annotated[str, Field(min_length=1, max_length=4000)]
    formula: Annotated[str, Field(min_length=1, max_length=1000)]
    source: Source
    direction: Direction
    target: Finite | None = None
    reference: Annotated[str, Field(max_length=1000)] | None = None
    #: Exported per district as a Prometheus gauge and shown first in reports.
    headline: bool = False
    measure: Measure

    @property
    def kind(self) -> str:
        """The measure's kind (``completeness``, ``hours_above``...)."""
        return self.measure.kind

    @property
    def is_ratio(self) -> bool:
        """True when the value is numerator ÷ denominator (and both are shown)."""
        return self.kind in PERCENT_MEASURES or (
            isinstance(self.measure, MetricTotal) and self.measure.per == "day"
        )

    @property
    def per_device(self) -> bool:
        """True when the indicator has a value per device (district drill-down)."""
        return self.kind in DEVICE_MEASURES

    @property
    def version(self) -> str:
        """Content hash of the definition (comments and key order do not change it)."""
        raw = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


_ADAPTER: TypeAdapter[IndicatorDefinition] = TypeAdapter(IndicatorDefinition)
_MESSAGES = {
    "union_tag_invalid": f"kind must be one of {', '.join(MEASURE_SOURCES)}",
    "union_tag_not_found": f"needs a kind, one of {', '.join(MEASURE_SOURCES)}",
}


@dataclass(slots=True)
class DefinitionSet:
    """What a set of files yielded: valid definitions (by id, file order) and problems."""

    definitions: dict[str, IndicatorDefinition] = field(default_factory=dict)
    problems: list[RuleProblem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    #: Where each definition is: file and line.
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no file had a problem."""
        return not self.problems


# --------------------------------------------------------------------------- loading


def indicator_files(paths: Sequence[Path]) -> tuple[list[Path], list[RuleProblem]]:
    """Indicator files named by ``paths``: files as given, folders searched for *.yaml."""
    files: list[Path] = []
    problems: list[RuleProblem] = []
    seen: set[Path] = set()
    for path in paths:
        found = (
            sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if path.is_dir()
            else [path]
            if path.is_file()
            else None
        )
        if found is None:
            problems.append(RuleProblem(str(path), 1, "no such file or directory"))
            continue
        for p in found:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                files.append(p)
    return files, problems


def load_definitions(paths: Sequence[Path], catalog: Catalog | None = None) -> DefinitionSet:
    """Load and cross-check every indicator file under ``paths``; never raises on bad input.

    With a ``catalog``, the asset types and metrics named by domain measures must exist
    in it (a misspelt metric would measure nothing, forever).
    """
    files, problems = indicator_files(paths)
    out = DefinitionSet(problems=problems, files=files)
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.problems.append(RuleProblem(str(path), 1, f"cannot read: {exc}"))
            continue
        _load_text(out, text, str(path), catalog)
    return out


def parse_definitions(text: str, file: str, catalog: Catalog | None = None) -> DefinitionSet:
    """Validate the text of one indicator file (``file`` names it in problems)."""
    out = DefinitionSet()
    _load_text(out, text, file, catalog)
    return out


def _load_text(out: DefinitionSet, text: str, file: str, catalog: Catalog | None) -> None:
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError as exc:
        out.problems.append(RuleProblem(file, exc.line, str(exc)))
        return
    if doc is None:
        return
    if not isinstance(doc, YamlMap):
        out.problems.append(
            RuleProblem(file, 1, "the file must be a mapping with an `indicators:` list")
        )
        return
    for key in doc:
        if key != "indicators":
            out.problems.append(
                RuleProblem(
                    file, key_line(doc, key), f"{key}: unknown top-level key (only indicators)"
                )
            )
    items = doc.get("indicators")
    if items is None:
        if "indicators" not in doc:
            out.problems.append(
                RuleProblem(file, 1, "indicators: missing; the file needs an `indicators:` list")
            )
        return
    if not isinstance(items, YamlSeq):
        out.problems.append(
            RuleProblem(file, key_line(doc, "indicators"), "indicators: must be a list")
        )
        return
    for i, node in enumerate(items):
        prefix = f"indicators[{i}]"
        line = item_line(items, i)
        if not isinstance(node, YamlMap):
            out.problems.append(RuleProblem(file, line, f"{prefix}: must be a mapping"))
            continue
        try:
            definition = _ADAPTER.validate_python(plain(node))
        except ValidationError as exc:
            for p in locate_errors(node, exc, default_line=line, overrides=_MESSAGES):
                where = prefix if p.path == "(file)" else f"{prefix}.{p.path}"
                out.problems.append(RuleProblem(file, p.line, f"{where}: {p.message}"))
            continue
        problems = _check(definition, node, prefix, file, catalog)
        if problems:
            out.problems.extend(problems)
            continue
        if definition.id in out.definitions:
            first_file, first_line = out.sources[definition.id]
            out.problems.append(
                RuleProblem(
                    file,
                    line_of(node, ["id"], line),
                    f"{prefix}.id: duplicate indicator id {definition.id!r}"
                    f" (first defined at {first_file}:{first_line})",
                )
            )
            continue
        out.definitions[definition.id] = definition
        out.sources[definition.id] = (file, line)


def _check(
    d: IndicatorDefinition, node: Any, prefix: str, file: str, catalog: Catalog | None
) -> list[RuleProblem]:
    """Cross-field checks: the source matches the measure; names exist in the catalog."""
    problems: list[RuleProblem] = []
    expected = MEASURE_SOURCES[d.kind]
    if d.source != expected:
        problems.append(
            RuleProblem(
                file,
                line_of(node, ["source"]),
                f"{prefix}.source: a {d.kind} measure is computed from {expected}, not {d.source}",
            )
        )
    if catalog is None:
        return problems
    m = d.measure
    asset_type = getattr(m, "asset_type", None)
    if asset_type is None:
        return problems
    spec = catalog.spec(asset_type)
    if spec is None:
        problems.append(
            RuleProblem(
                file,
                line_of(node, ["measure", "asset_type"]),
                f"{prefix}.measure.asset_type: {asset_type!r} is not an asset type of the"
                f" device catalog ({', '.join(catalog.asset_types())})",
            )
        )
        return problems
    metrics: list[tuple[list[str | int], str]] = []
    if isinstance(m, DaysMeanAbove | HoursAbove | MetricTotal):
        metrics.append((["measure", "metric"], m.metric))
    elif isinstance(m, HoursOk):
        metrics.append((["measure", "ok", "metric"], m.ok.metric))
        if m.when is not None:
            metrics.append((["measure", "when", "metric"], m.when.metric))
    for loc, metric in metrics:
        if metric not in spec.metrics:
            problems.append(
                RuleProblem(
                    file,
                    line_of(node, loc),
                    f"{prefix}.{'.'.join(map(str, loc))}: {metric!r} is not a metric of"
                    f" {asset_type} in the device catalog ({', '.join(sorted(spec.metrics))})",
                )
            )
    return problems


def check_command_problems(paths: Sequence[Path]) -> tuple[list[RuleProblem], int, int]:
    """For ``hub rules check``: problems of the indicator files under ``paths`` (against
    the device catalog), how many definitions they hold, and how many files. A full
    set (a folder) must define the built-in ids the city relies on."""
    from hub.catalog import load_catalog
    from hub.yamlfile import FileProblem

    try:
        catalog: Catalog | None = load_catalog()
    except FileProblem:
        catalog = None  # the rule check reports the catalog's own problems
    found = load_definitions(paths, catalog)
    problems = list(found.problems)
    folders = [p for p in paths if p.is_dir()]
    if folders and not problems:
        missing = [i for i in BUILT_IN_IDS if i not in found.definitions]
        if missing:
            problems.append(
                RuleProblem(
                    str(folders[0]),
                    1,
                    f"built-in indicators missing: {', '.join(missing)} (CONTRACT §8;"
                    " copy them from the shipped rules/indicators/)",
                )
            )
    return problems, len(found.definitions), len(found.files)


def domain_metrics(definitions: Iterable[IndicatorDefinition]) -> dict[str, frozenset[str]]:
    """Per asset type, the metrics whose values the roll-ups must keep (domain measures)."""
    out: dict[str, set[str]] = {}
    for d in definitions:
        m = d.measure
        if isinstance(m, DaysMeanAbove | HoursAbove | MetricTotal):
            out.setdefault(m.asset_type, set()).add(m.metric)
    return {k: frozenset(v) for k, v in out.items()}


def domain_checks(
    definitions: Iterable[IndicatorDefinition],
) -> dict[str, list[tuple[str, HoursOk]]]:
    """Per asset type, the ``hours_ok`` definitions whose conditions each reading feeds."""
    out: dict[str, list[tuple[str, HoursOk]]] = {}
    for d in definitions:
        if isinstance(d.measure, HoursOk):
            out.setdefault(d.measure.asset_type, []).append((d.id, d.measure))
    return out


def thresholds(definitions: Iterable[IndicatorDefinition]) -> dict[str, tuple[str, str, float]]:
    """``hours_above`` definitions: id -> (asset type, metric, threshold)."""
    return {
        d.id: (d.measure.asset_type, d.measure.metric, d.measure.threshold)
        for d in definitions
        if isinstance(d.measure, HoursAbove)
    }
