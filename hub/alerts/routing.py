"""The routing file (``rules/routes.yaml``): receivers, the routing tree, grouping,
flapping, inhibition, maintenance windows and response targets; loading with ``file:line`` errors;
and matching an alert to the routes that notify it.

Routing follows Prometheus Alertmanager: the tree is walked depth first, an alert
goes to the deepest routes that match it, a matching child stops its later
siblings unless it says ``continue: true``, and children inherit ``group_wait``,
``repeat_interval`` and ``send_resolved`` from their parent.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time as dtime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.durations import parse_duration_ms
from hub.messages import Severity
from hub.ports import RuleProblem
from hub.yamlfile import DOTS, YamlMap, YamlSyntaxError, line_of, locate_errors, parse_yaml, plain

_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _routing_duration_ms(value: object) -> int:
    # Routing files have always read a bare number as seconds (``group_wait: 30``).
    return parse_duration_ms(value, bare="seconds")


DurationMs = Annotated[int, BeforeValidator(_routing_duration_ms)]
MatchValue = str | list[str]


def _severity_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be one of info, warning, critical, emergency")  # noqa: TRY004  (ditto)
    return Severity.parse(value).label


SeverityName = Annotated[str, BeforeValidator(_severity_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- receivers


class MqttReceiver(_Model):
    """Alert events on ``{prefix}/alerts/{district}/{source}`` plus retained state."""

    retain_state: bool = True


class WebhookReceiver(_Model):
    """HTTP POST of the notification as JSON, signed with HMAC-SHA256."""

    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    timeout: DurationMs = 5000
    headers: dict[str, str] = Field(default_factory=dict)


class AppriseReceiver(_Model):
    """Email, SMS gateways and chat through Apprise URLs (``mailto://``, ``json://``…)."""

    urls: Annotated[list[str], Field(min_length=1)]
    title_prefix: str = ""


class LogReceiver(_Model):
    """Writes the notification to the hub's own log (a console for the demo)."""

    level: Literal["info", "warning", "error"] = "warning"


class Receiver(_Model):
    """A named destination; exactly one channel."""

    name: Annotated[str, Field(pattern=_NAME_RE)]
    mqtt: MqttReceiver | None = None
    webhook: WebhookReceiver | None = None
    apprise: AppriseReceiver | None = None
    log: LogReceiver | None = None

    @model_validator(mode="after")
    def _one_channel(self) -> Receiver:
        chosen = [k for k in ("mqtt", "webhook", "apprise", "log") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("needs exactly one of mqtt, webhook, apprise, log")
        return self

    @property
    def kind(self) -> str:
        """``mqtt``, ``webhook``, ``apprise`` or ``log``."""
        for k in ("mqtt", "webhook", "apprise"):
            if getattr(self, k) is not None:
                return k
        return "log"


# --------------------------------------------------------------------------- routes


class EscalationStep(_Model):
    """``after`` this long without acknowledgement, notify ``receivers`` too."""

    after: DurationMs
    receivers: Annotated[list[str], Field(min_length=1)]


class Route(_Model):
    """A node of the routing tree."""

    match: dict[str, MatchValue] = Field(default_factory=dict)
    min_severity: SeverityName | None = None
    receivers: list[str] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    group_wait: DurationMs | None = None
    group_interval: DurationMs | None = None
    repeat_interval: DurationMs | None = None
    send_resolved: bool | None = None
    escalate: list[EscalationStep] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)

    @field_validator("match")
    @classmethod
    def _check_match(cls, value: dict[str, MatchValue]) -> dict[str, MatchValue]:
        for key, want in value.items():
            if key == "severity":
                for name in [want] if isinstance(want, str) else want:
                    Severity.parse(name)
        return value

    @field_validator("escalate")
    @classmethod
    def _ascending(cls, value: list[EscalationStep]) -> list[EscalationStep]:
        afters = [s.after for s in value]
        if afters != sorted(afters) or any(a <= 0 for a in afters):
            raise ValueError("escalation steps need positive `after` delays in rising order")
        return value

    def matches(self, labels: Mapping[str, str], severity: Severity) -> bool:
        """True when the alert's labels and severity satisfy this node."""
        if self.min_severity is not None and severity < Severity.parse(self.min_severity):
            return False
        return matchers_match(self.match, labels)


class Grouping(_Model):
    """Incidents: alerts with equal ``by`` labels within ``window`` of each other."""

    by: list[str] = Field(default_factory=lambda: ["district", "asset_type"])
    window: DurationMs = 30 * 60_000


class Flapping(_Model):
    """An alert opened ``threshold`` times within ``window`` is flapping: its
    resolution is held back for ``hold``, and a re-fire within it keeps the alert."""

    window: DurationMs = 10 * 60_000
    threshold: Annotated[int, Field(ge=2)] = 3
    hold: DurationMs = 5 * 60_000


class InhibitRule(_Model):
    """Active alerts matching ``source`` mute alerts matching ``target`` with ``equal`` labels."""

    source: dict[str, MatchValue]
    target: dict[str, MatchValue] = Field(default_factory=dict)
    equal: list[str] = Field(default_factory=list)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MaintenanceWindow(_Model):
    """A recurring window (e.g. planned works every night 02:00-05:00) that mutes matches."""

    name: Annotated[str, Field(min_length=1)]
    match: dict[str, MatchValue]
    start: dtime
    end: dtime
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(_DAYS)  # type: ignore[arg-type]
    )
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: object) -> object:
        # YAML 1.1 reads 02:00 as the sexagesimal integer 120; take it back to HH:MM.
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value // 60:02d}:{value % 60:02d}"
        return value


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("a target time must be longer than 0")
    return value


class Targets(_Model):
    """Target times per severity, for the response indicators (docs/indicators.md):
    ``acknowledge`` within this long of opening (``ack_within_target_pct``)."""

    acknowledge: dict[SeverityName, Annotated[DurationMs, AfterValidator(_positive)]] = Field(
        default_factory=dict
    )


def _default_inhibit() -> list[InhibitRule]:
    # An area-wide alert already tells responders about the district: the per-device
    # alerts of the same asset type in that district would only bury it.
    return [InhibitRule(source={"source": "_area"}, target={}, equal=["district", "asset_type"])]


class RoutesFile(_Model):
    """The whole routing file."""

    receivers: list[Receiver]
    route: Route
    grouping: Grouping = Field(default_factory=Grouping)
    flapping: Flapping = Field(default_factory=Flapping)
    inhibit: list[InhibitRule] = Field(default_factory=_default_inhibit)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    targets: Targets = Field(default_factory=Targets)

    def receiver(self, name: str) -> Receiver:
        """The receiver called ``name`` (KeyError when absent)."""
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)


#: Used when no routing file exists: every alert on MQTT only.
DEFAULT_ROUTES = RoutesFile(
    receivers=[Receiver(name="mqtt", mqtt=MqttReceiver())],
    route=Route(receivers=["mqtt"], group_wait=0, repeat_interval=4 * 3_600_000),
)


# --------------------------------------------------------------------------- matching


def matchers_match(matchers: Mapping[str, MatchValue], labels: Mapping[str, str]) -> bool:
    """Every matcher holds: value (or one of a list) equal, with ``*`` wildcards."""
    for key, want in matchers.items():
        have = labels.get(key)
        if have is None:
            return False
        options = [want] if isinstance(want, str) else want
        if not any(fnmatch.fnmatchcase(have, w) for w in options):
            return False
    return True


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What one matched route asks for one alert: who, when, how often, escalation."""

    path: str
    receivers: tuple[str, ...]
    group_wait_ms: int
    repeat_ms: int
    send_resolved: bool
    escalate: tuple[tuple[int, tuple[str, ...]], ...]
    #: Digest receivers get at most one notification per incident this often.
    group_interval_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class _Inherited:
    group_wait_ms: int
    repeat_ms: int
    send_resolved: bool
    group_interval_ms: int = 60_000


_ROOT_DEFAULTS = _Inherited(
    group_wait_ms=0, repeat_ms=4 * 3_600_000, send_resolved=True, group_interval_ms=60_000
)


def plan_routes(root: Route, labels: Mapping[str, str], severity: Severity) -> list[RoutePlan]:
    """The routes (deepest matches, with ``continue``) that notify an alert."""
    return _walk(root, "root", labels, severity, _ROOT_DEFAULTS, is_root=True)


class RoutePlanner:
    """:func:`plan_routes` for one tree, remembered by what the tree looks at.

    A plan depends only on the severity and the labels some node matches on, so
    the alerts of a storm (which differ by source, rarely by those) share a few
    plans instead of walking the tree each (~50 µs an alert).
    """

    #: Plans remembered at most (then forgotten all at once).
    SIZE = 4096

    def __init__(self, root: Route) -> None:
        self._root = root
        self._keys = tuple(sorted(_match_keys(root)))
        self._plans: dict[tuple[object, ...], tuple[RoutePlan, ...]] = {}

    def plan(self, labels: Mapping[str, str], severity: Severity) -> tuple[RoutePlan, ...]:
        """The same as ``plan_routes(root, labels, severity)``."""
        key = (int(severity), *(labels.get(k) for k in self._keys))
        plans = self._plans.get(key)
        if plans is None:
            if len(self._plans) >= self.SIZE:
                self._plans.clear()
            plans = self._plans[key] = tuple(plan_routes(self._root, labels, severity))
        return plans


def _match_keys(route: Route) -> set[str]:
    keys = set(route.match)
    for child in route.routes:
        keys |= _match_keys(child)
    return keys


def _walk(
    route: Route,
    path: str,
    labels: Mapping[str, str],
    severity: Severity,
    inherited: _Inherited,
    *,
    is_root: bool = False,
) -> list[RoutePlan]:
    if not is_root and not route.matches(labels, severity):
        return []
    here = _Inherited(
        group_wait_ms=inherited.group_wait_ms if route.group_wait is None else route.group_wait,
        repeat_ms=inherited.repeat_ms if route.repeat_interval is None else route.repeat_interval,
        send_resolved=(
            inherited.send_resolved if route.send_resolved is None else route.send_resolved
        ),
        group_interval_ms=(
            inherited.group_interval_ms if route.group_interval is None else route.group_interval
        ),
    )
    found: list[RoutePlan] = []
    for i, child in enumerate(route.routes):
        got = _walk(child, f"{path}.{i}", labels, severity, here)
        if got:
            found.extend(got)
            if not child.continue_:
                break
    if found:
        return found
    if not route.receivers and not route.escalate:
        return []
    return [
        RoutePlan(
            path=path,
            receivers=tuple(route.receivers),
            group_wait_ms=here.group_wait_ms,
            repeat_ms=here.repeat_ms,
            send_resolved=here.send_resolved,
            escalate=tuple((s.after, tuple(s.receivers)) for s in route.escalate),
            group_interval_ms=here.group_interval_ms,
        )
    ]


# --------------------------------------------------------------------------- loading


class RoutesInvalid(Exception):
    """The routing file failed validation; ``problems`` say where and why."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


def _loc_text(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc) or "(file)"


def parse_routes(text: str, file: str) -> tuple[RoutesFile | None, list[RuleProblem], Any]:
    """Parse and validate routing YAML; returns the model (or None), problems, and the tree."""
    try:
        tree = parse_yaml(text)
    except YamlSyntaxError as exc:
        return None, [RuleProblem(file, exc.line, str(exc))], None
    if not isinstance(tree, YamlMap):
        return None, [RuleProblem(file, 1, "the routing file must be a mapping")], tree
    try:
        model = RoutesFile.model_validate(plain(tree))
    except ValidationError as exc:
        problems = [
            RuleProblem(file, p.line, f"{p.path}: {p.message}")
            for p in locate_errors(tree, exc, style=DOTS)
        ]
        return None, problems, tree
    problems = _cross_check(model, file, tree)
    return (None if problems else model), problems, tree


def _cross_check(model: RoutesFile, file: str, tree: Any) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    names: set[str] = set()
    for i, r in enumerate(model.receivers):
        if r.name in names:
            loc: list[str | int] = ["receivers", i, "name"]
            problems.append(
                RuleProblem(file, line_of(tree, loc), f"{_loc_text(loc)}: duplicate {r.name!r}")
            )
        names.add(r.name)

    def visit(route: Route, loc: list[str | int]) -> None:
        for j, name in enumerate(route.receivers):
            if name not in names:
                where = [*loc, "receivers", j]
                problems.append(
                    RuleProblem(
                        file,
                        line_of(tree, where),
                        f"{_loc_text(where)}: no receiver named {name!r}",
                    )
                )
        for k, step in enumerate(route.escalate):
            for j, name in enumerate(step.receivers):
                if name not in names:
                    where = [*loc, "escalate", k, "receivers", j]
                    problems.append(
                        RuleProblem(
                            file,
                            line_of(tree, where),
                            f"{_loc_text(where)}: no receiver named {name!r}",
                        )
                    )
        for k, child in enumerate(route.routes):
            visit(child, [*loc, "routes", k])

    if model.route.match or model.route.min_severity:
        where = ["route", "match"]
        problems.append(
            RuleProblem(
                file,
                line_of(tree, where),
                "route: the root route matches every alert; put matchers on child routes",
            )
        )
    visit(model.route, ["route"])
    return problems


def load_routes(path: Path) -> RoutesFile:
    """Load a routing file; raises RoutesInvalid (with file:line problems)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutesInvalid([RuleProblem(str(path), 0, f"cannot read: {exc.strerror}")]) from exc
    model, problems, _ = parse_routes(text, str(path))
    if model is None:
        raise RoutesInvalid(problems)
    return model


def line_of_path(path: Path, loc: Sequence[str | int]) -> int:
    """The line of ``loc`` in the routing file (1 when it cannot be found)."""
    try:
        tree = parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YamlSyntaxError):
        return 1
    return line_of(tree, loc)
