"""``composite``: all/any conditions on one device's metrics, or an area rule over a district."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import OPS, Kind, fmt
from hub.rules.model import CompositeRule, Condition
from hub.rules.state import Series, Window

#: Cap on samples kept per change condition (they are thinned like rate_of_change).
CONDITION_SAMPLES = 60


class _Cond:
    """One compiled condition; its per-series state is [truth, truth_ts, value, window]."""

    def __init__(self, c: Condition) -> None:
        self.c = c
        self.metric = c.metric
        self.cmp = OPS[c.op]
        self.value = float(c.value)
        self.window = c.window_ms or 0
        self.spacing = self.window / CONDITION_SAMPLES
        self.percent = c.of == "change_pct"

    def text(self) -> str:
        c = self.c
        what = {
            "value": c.metric,
            "change": f"change of {c.metric}",
            "change_pct": f"% change of {c.metric}",
        }[c.of]
        return f"{what} {c.op} {fmt(self.value)}"

    def update(self, st: list[Any], ts: int, v: float) -> None:
        if not self.window:
            st[0], st[1], st[2] = self.cmp(v, self.value), ts, v
            return
        w: Window = st[3]
        w.drop_before(ts - self.window)
        if not w.ts or ts - w.ts[-1] >= self.spacing:
            w.append(ts, v, CONDITION_SAMPLES + 1)
        base = w.v[0]
        if w.ts[0] == ts or (self.percent and base == 0):
            st[0], st[1] = None, ts
            return
        change = v - base
        if self.percent:
            change = 100.0 * change / abs(base)
        st[0], st[1], st[2] = self.cmp(change, self.value), ts, change

    def holds(self, st: list[Any], now: int) -> bool:
        # A change condition's verdict counts only while its reading is within the window,
        # so a spike an hour ago does not combine with a drop now.
        return st[0] is True and (not self.window or now - st[1] <= self.window)


class Composite(Kind):
    """``all`` or ``any`` of conditions on one device's metrics (latest known values)."""

    def __init__(self, rule: CompositeRule) -> None:
        super().__init__(rule)
        self.r = rule
        self.conds = [_Cond(c) for c in rule.conditions]
        self.metrics = tuple(dict.fromkeys(c.metric for c in self.conds))
        self.need_all = rule.all_ is not None
        self.history_ms = max((c.window for c in self.conds), default=0)
        self.primes = self.history_ms > 0

    def new_aux(self) -> list[list[Any]]:
        """Per condition: [truth, truth_ts, value, window]."""
        return [[None, 0, 0.0, Window() if c.window else None] for c in self.conds]

    def step(self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading) -> bool:
        """Update the conditions whose metric arrived; combine all/any."""
        aux: list[list[Any]] = s.aux
        for c, st in zip(self.conds, aux, strict=True):
            v = values.get(c.metric)
            if v is not None:
                c.update(st, ts, float(v))
        held = [c.holds(st, ts) for c, st in zip(self.conds, aux, strict=True)]
        s.value = float(sum(held))
        return all(held) if self.need_all else any(held)

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """Each condition with its latest value and verdict."""
        aux: list[list[Any]] = s.aux
        parts = []
        observed: dict[str, float] = {}
        for c, st in zip(self.conds, aux, strict=True):
            ok = c.holds(st, s.last_ts)
            observed[f"{c.metric}{'' if not c.window else '_change'}"] = float(st[2])
            parts.append(f"{c.text()} ({fmt(float(st[2]))}: {'yes' if ok else 'no'})")
        joiner = " and " if self.need_all else " or "
        if state is RuleState.RESOLVED:
            summary = f"{s.dev[2]} no longer meets {joiner.strip()} of: " + "; ".join(parts) + "."
        else:
            summary = f"{s.dev[2]}: " + joiner.join(parts) + f"{self.held(state)}."
        return Explanation(summary, None, observed)

    def dump_aux(self, aux: Any) -> Any:
        """Conditions as lists."""
        return [[st[0], st[1], st[2], st[3].dump() if st[3] is not None else None] for st in aux]

    def load_aux(self, data: Any) -> Any:
        """Inverse of dump_aux."""
        return [
            [st[0], int(st[1]), float(st[2]), Window.load(st[3]) if st[3] is not None else None]
            for st in data
        ]


class Area(Kind):
    """At least ``at_least`` devices of a district in ``state`` of rule ``area.rule``.

    Fed by the engine when the target rule's series change state; series key is
    the district, source ``_area``. ``aux`` holds the member device ids (sorted).
    """

    timer_native = True
    is_area = True

    def __init__(self, rule: CompositeRule) -> None:
        super().__init__(rule)
        assert rule.area is not None
        self.r = rule
        self.target = rule.area.rule
        self.target_state = rule.area.state
        self.at_least = rule.area.at_least

    def new_aux(self) -> list[str]:
        """No members yet."""
        return []

    def step(self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading) -> bool:
        """Not fed by readings."""
        return len(s.aux) >= self.at_least

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """Which devices count, against how many are needed."""
        members: list[str] = s.aux
        listed = ", ".join(members[:20]) + (" …" if len(members) > 20 else "")
        n = len(members)
        if state is RuleState.RESOLVED:
            summary = (
                f"{n} device(s) of district {s.dev[0]} in state {self.target_state} of"
                f" {self.target}: below {self.at_least}."
            )
        else:
            summary = (
                f"{n} devices of district {s.dev[0]} are {self.target_state} on {self.target}"
                f" (at least {self.at_least} needed): {listed}{self.held(state)}."
            )
        return Explanation(summary, float(self.at_least), {"devices": float(n)})
