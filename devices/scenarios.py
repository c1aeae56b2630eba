"""Scenario files (``devices/scenarios/*.yaml``): scripted events for the simulated fleet.

A scenario is a list of events at times relative to the fleet's start::

    name: demo
    description: A flood, a burst main, a gas leak...
    events:
      - at: 20s
        kind: ramp                  # a metric moves to a value, holds, comes back
        select: {district: d03, asset_type: flood_gauge, count: 4}
        metric: water_level_m
        to: 3.5
        duration: 60s               # ramp time (also the time to come back)
        hold: 5m                    # absent: stays at `to` until the end
      - {at: 30s, kind: flatline, devices: [aq-d04-001]}       # stuck sensor
      - {at: 40s, kind: silent, devices: [fg-d06-001], offline_after: 60s}
      - {at: 50s, kind: outage, devices: [tc-d01-002], duration: 45s}   # then backfill

Kinds: ``ramp`` (``metric``, ``to``, ``duration``, ``hold``, ``jitter``),
``flatline`` (``metrics``: stuck at their value, all when absent; ``duration``),
``silent`` (stops publishing; ``offline_after``: its connection drops then, so the
broker publishes its last will; ``duration``: comes back after), ``outage`` (loses
its connection for ``duration``, keeps its readings and publishes them as a batch
when back). Targets: ``devices: [ids]`` or ``select: {district, asset_type, count,
offset}`` (devices sorted by id). Check files with ``python -m devices.scenarios
check [FILE...]``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.signals import DeviceSpec
from hub.durations import DurationSeconds
from hub.yamlfile import FileProblem, load_yaml, validation_messages

#: Scenarios shipped with the package (``--scenario demo`` finds ``demo.yaml`` here).
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Select(_Model):
    """Which devices an event applies to: the first ``count`` matching, sorted by id."""

    district: str | None = None
    asset_type: str | None = None
    count: Annotated[int, Field(ge=1)] = 1
    offset: Annotated[int, Field(ge=0)] = 0


class _Event(_Model):
    at: DurationSeconds
    description: str = ""
    devices: list[str] | None = None
    select: Select | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _Event:
        if (self.devices is None) == (self.select is None):
            raise ValueError("give exactly one of devices: [...] or select: {...}")
        return self


class Ramp(_Event):
    """A metric moves to ``to`` over ``duration``, holds for ``hold``, then comes back."""

    kind: Literal["ramp"]
    metric: str
    to: float
    duration: DurationSeconds = 0.0
    hold: DurationSeconds | None = None
    jitter: Annotated[float, Field(ge=0)] = 0.0


class Flatline(_Event):
    """A stuck sensor: ``metrics`` (all when absent) keep their value for ``duration``."""

    kind: Literal["flatline"]
    metrics: list[str] | None = None
    duration: DurationSeconds | None = None


class Silent(_Event):
    """The device stops publishing; its connection drops ``offline_after`` later."""

    kind: Literal["silent"]
    duration: DurationSeconds | None = None
    offline_after: DurationSeconds | None = None


class Outage(_Event):
    """The device loses its connection, keeps its readings, and backfills them when back."""

    kind: Literal["outage"]
    duration: Annotated[DurationSeconds, Field(gt=0)]


Event = Annotated[Ramp | Flatline | Silent | Outage, Field(discriminator="kind")]


class Scenario(_Model):
    """A scenario file."""

    name: str
    description: str = ""
    events: list[Event] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Effects:
    """What the scenario does to one device's next reading at one instant."""

    silent: bool = False
    buffering: bool = False
    ramps: tuple[tuple[str, float, float], ...] = ()  # (metric, target, progress 0..1)
    flatline: frozenset[str] | None = None  # metrics stuck now; the empty set: all of them
    flatline_since: float = 0.0


NO_EFFECTS = Effects()


def _ramp_progress(event: Ramp, elapsed: float) -> float:
    t = elapsed - event.at
    if t < 0:
        return 0.0
    if event.duration > 0 and t < event.duration:
        return t / event.duration
    if event.hold is None:
        return 1.0
    t -= event.duration + event.hold
    if t < 0:
        return 1.0
    if event.duration > 0 and t < event.duration:
        return 1.0 - t / event.duration
    return 0.0


def _active(at: float, duration: float | None, elapsed: float) -> bool:
    return elapsed >= at and (duration is None or elapsed < at + duration)


@dataclass(frozen=True, slots=True)
class Action:
    """A connection change at a time: ``drop`` (abrupt, last will) or ``restore``."""

    at: float
    device_id: str
    kind: Literal["drop", "restore"]


class ResolvedScenario:
    """A scenario bound to a fleet: per-device events, connection actions, effects."""

    def __init__(
        self, scenario: Scenario, per_device: Mapping[str, list[tuple[Event, float]]]
    ) -> None:
        self.scenario = scenario
        self._events = dict(per_device)
        actions: list[Action] = []
        for device_id, events in self._events.items():
            for event, _jitter in events:
                if isinstance(event, Outage):
                    actions.append(Action(event.at, device_id, "drop"))
                    actions.append(Action(event.at + event.duration, device_id, "restore"))
                elif isinstance(event, Silent) and event.offline_after is not None:
                    actions.append(Action(event.at + event.offline_after, device_id, "drop"))
                    if event.duration is not None:
                        end = max(event.at + event.duration, event.at + event.offline_after)
                        actions.append(Action(end, device_id, "restore"))
        self.actions = sorted(actions, key=lambda a: (a.at, a.device_id, a.kind))

    def devices(self) -> list[str]:
        """Ids of the devices some event touches."""
        return sorted(self._events)

    def effects(self, device_id: str, elapsed: float) -> Effects:
        """The scenario's effects on ``device_id`` at ``elapsed`` seconds after start."""
        events = self._events.get(device_id)
        if not events:
            return NO_EFFECTS
        silent = buffering = False
        ramps: list[tuple[str, float, float]] = []
        stuck: set[str] | None = None
        stuck_all = False
        since = 0.0
        for event, jitter in events:
            if isinstance(event, Ramp):
                progress = _ramp_progress(event, elapsed)
                if progress > 0:
                    ramps.append((event.metric, event.to + jitter, progress))
            elif isinstance(event, Flatline):
                if _active(event.at, event.duration, elapsed):
                    stuck = (stuck or set()) | set(event.metrics or ())
                    stuck_all = stuck_all or not event.metrics
                    since = max(since, event.at)
            elif isinstance(event, Silent):
                silent = silent or _active(event.at, event.duration, elapsed)
            elif _active(event.at, event.duration, elapsed):
                buffering = True
        if not (silent or buffering or ramps or stuck is not None):
            return NO_EFFECTS
        return Effects(
            silent=silent,
            buffering=buffering,
            ramps=tuple(ramps),
            flatline=None if stuck is None else frozenset() if stuck_all else frozenset(stuck),
            flatline_since=since,
        )


def resolve(
    scenario: Scenario,
    fleet: Sequence[DeviceSpec],
    metrics_of: Mapping[str, Iterable[str]] | None = None,
    seed: int = 1,
) -> tuple[ResolvedScenario, list[str]]:
    """Bind ``scenario`` to ``fleet``; also returns warnings (events matching no device).

    ``metrics_of`` (asset type -> metric names, from the catalog) lets a ramp or
    flatline on a metric the device does not have be reported instead of ignored.
    """
    import random

    by_id = {d.device_id: d for d in fleet}
    ordered = sorted(fleet, key=lambda d: d.device_id)
    per_device: dict[str, list[tuple[Event, float]]] = {}
    warnings: list[str] = []
    for n, event in enumerate(scenario.events):
        where = f"scenario {scenario.name!r} event {n} ({event.kind} at {event.at:g}s)"
        if event.devices is not None:
            targets = [by_id[i] for i in event.devices if i in by_id]
            missing = [i for i in event.devices if i not in by_id]
            if missing:
                warnings.append(f"{where}: devices not in this fleet: {', '.join(missing)}")
        else:
            sel = event.select
            assert sel is not None
            matching = [
                d
                for d in ordered
                if (sel.district is None or d.district == sel.district)
                and (sel.asset_type is None or d.asset_type == sel.asset_type)
            ]
            targets = matching[sel.offset : sel.offset + sel.count]
            if len(targets) < sel.count:
                warnings.append(f"{where}: matched {len(targets)} of {sel.count} devices")
        wanted: list[str] = []
        if isinstance(event, Ramp):
            wanted = [event.metric]
        elif isinstance(event, Flatline):
            wanted = list(event.metrics or ())
        rng = random.Random(f"{seed}:{n}")  # noqa: S311 (spread of scripted values, not crypto)
        for device in targets:
            if metrics_of is not None and device.asset_type in metrics_of:
                known = set(metrics_of[device.asset_type])
                unknown = [m for m in wanted if m not in known]
                if unknown:
                    warnings.append(
                        f"{where}: {device.device_id} ({device.asset_type}) has no metric "
                        f"{', '.join(unknown)}; event skipped for it"
                    )
                    continue
            jitter = rng.uniform(-event.jitter, event.jitter) if isinstance(event, Ramp) else 0.0
            per_device.setdefault(device.device_id, []).append((event, jitter))
    return ResolvedScenario(scenario, per_device), warnings


def scenario_path(name_or_path: str | Path) -> Path:
    """The file of a scenario given by name (``demo``) or path; FileProblem if none."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    shipped = SCENARIO_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))) or "none"
    raise FileProblem([f"{name_or_path}:1: no such scenario (shipped: {names})"])


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario by name or path; FileProblem with file:line messages."""
    path = scenario_path(name_or_path)
    if not path.exists():
        raise FileProblem([f"{path}:1: no such file"])
    document = load_yaml(path)
    try:
        return Scenario.model_validate(document)
    except ValidationError as exc:
        raise FileProblem(validation_messages(path, document, exc)) from None


def check_scenarios(paths: Sequence[Path] | None = None) -> list[str]:
    """Problems of the given scenario files (default: the shipped ones); [] when fine."""
    files = list(paths) if paths else sorted(SCENARIO_DIR.glob("*.yaml"))
    problems: list[str] = []
    for path in files:
        targets = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for target in targets:
            try:
                load_scenario(target)
            except FileProblem as exc:
                problems.extend(exc.messages)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devices.scenarios check [FILE...]``: print problems, exit 1 if any."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "check":
        print("usage: python -m devices.scenarios check [FILE|DIR...]", file=sys.stderr)
        return 2
    problems = check_scenarios([Path(a) for a in args[1:]])
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("scenarios ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
