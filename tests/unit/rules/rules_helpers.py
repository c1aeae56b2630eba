"""Helpers for the rule engine's unit tests: engines from YAML text, readings, and a driver.

Time is explicit: readings carry their own ``ts``; timers move only by ``tick(now)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from hub.messages import Reading, RuleEvent, RuleState
from hub.rules.engine import RuleEngine
from hub.rules.loader import load_text
from hub.rules.model import RuleModel

T0 = 1_764_000_000_000  # a fixed epoch-ms origin for every test
MIN = 60_000


def rules_from(text: str) -> list[RuleModel]:
    """Rules of a YAML rule-file text; fails the test on any problem."""
    return list(_parsed(text))


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> tuple[RuleModel, ...]:
    # Rule models are frozen, so Hypothesis examples can share one parse.
    res = load_text(text, "test.yaml")
    assert not res.problems, [str(p) for p in res.problems]
    return tuple(res.rules)


@dataclass
class Driver:
    """Feeds readings and ticks to an engine and keeps every event."""

    engine: RuleEngine
    events: list[RuleEvent] = field(default_factory=list)

    def read(
        self,
        at_s: float,
        device: str = "g1",
        *,
        district: str = "d01",
        asset_type: str = "flood_gauge",
        received_ms: int = 0,
        out_of_range: tuple[str, ...] = (),
        **metrics: float | bool,
    ) -> list[RuleEvent]:
        """A reading ``at_s`` seconds after T0."""
        ts = T0 + round(at_s * 1000)
        r = Reading(
            district,
            asset_type,
            device,
            ts,
            metrics,
            received_ms=received_ms,
            quality="out_of_range" if out_of_range else "ok",
            out_of_range=out_of_range,
        )
        evs = self.engine.evaluate(r)
        self.events.extend(evs)
        return evs

    def tick(self, at_s: float) -> list[RuleEvent]:
        """Timers at ``at_s`` seconds after T0."""
        evs = self.engine.tick(T0 + round(at_s * 1000))
        self.events.extend(evs)
        return evs

    def states(self, rule_id: str | None = None) -> list[tuple[str, str, float]]:
        """(state, source, seconds after T0) of the events so far (of one rule)."""
        return [
            (e.state.value, e.source, (e.ts_ms - T0) / 1000)
            for e in self.events
            if rule_id is None or e.rule_id == rule_id
        ]

    def fired(self, rule_id: str) -> list[RuleEvent]:
        """FIRING events of ``rule_id``."""
        return [e for e in self.events if e.rule_id == rule_id and e.state is RuleState.FIRING]


def make_driver(
    text: str, *, late_tolerance_s: int = 300, interval_s: float | None = 60.0
) -> Driver:
    """A Driver over a fresh engine with the rules of ``text``."""
    engine = RuleEngine(
        rules_from(text),
        late_tolerance_s=late_tolerance_s,
        expected_interval_s=lambda _asset: interval_s,
    )
    return Driver(engine)
