"""``rate_of_change``: how much a metric moved within a window, absolute or percent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.durations import format_duration
from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import HOLD, OPS, Kind, fmt
from hub.rules.model import RateOfChangeRule
from hub.rules.state import FIRING, Series, Window


class RateOfChange(Kind):
    """Change = newest value minus the oldest sample within ``window``.

    Samples are kept at least ``window / max_samples`` apart, so the window's
    memory stays bounded at any reading rate; the newest value is always compared.
    """

    def __init__(self, rule: RateOfChangeRule) -> None:
        super().__init__(rule)
        self.r = rule
        self.metric = rule.metric
        self.metrics = (rule.metric,)
        self.window = rule.window_ms
        self.primes = True
        self.history_ms = self.window
        self.spacing = rule.window_ms / rule.max_samples
        self.cap = rule.max_samples + 1
        self.cmp = OPS[rule.op]
        self.value = float(rule.value)
        self.clear = None if rule.clear is None else float(rule.clear)
        self.hold = HOLD.get(rule.op)
        self.percent = rule.mode == "percent"

    def new_aux(self) -> Window:
        """An empty window."""
        return Window()

    def step(
        self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading
    ) -> bool | None:
        """Compare the change since the window's oldest sample."""
        v = float(values[self.metric])
        w: Window = s.aux
        w.drop_before(ts - self.window)
        if not w.ts or ts - w.ts[-1] >= self.spacing:
            w.append(ts, v, self.cap)
        if len(w.ts) < 2 and w.ts[0] == ts:
            return None
        base = w.v[0]
        change = v - base
        if self.percent:
            if base == 0:
                return None
            change = 100.0 * change / abs(base)
        s.value = change
        if s.state == FIRING and self.clear is not None and self.hold is not None:
            return self.hold(change, self.clear)
        return self.cmp(change, self.value)

    def late(self, s: Series, ts: int, values: Mapping[str, MetricValue]) -> None:
        """Late samples still count as the window's history."""
        w: Window = s.aux
        if not w.ts or ts >= w.ts[-1] - self.window:
            w.insert(ts, float(values[self.metric]), self.cap)

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """The change, the window and the samples it was measured over."""
        r = self.r
        w: Window = s.aux
        unit = " %" if self.percent else ""
        span = format_duration(self.window)
        observed: dict[str, float] = {"change": s.value, "window_s": self.window / 1000}
        if len(w):
            observed["from"] = w.v[0]
        if state is RuleState.RESOLVED:
            summary = (
                f"{r.metric} on {s.dev[2]} changed by {fmt(s.value)}{unit} within {span}:"
                f" back inside the limit{self.held(state)}."
            )
        else:
            summary = (
                f"{r.metric} on {s.dev[2]} changed by {fmt(s.value)}{unit} within {span}"
                f" ({r.op} {fmt(self.value)}{unit}){self.held(state)}."
            )
        return Explanation(summary, self.value, observed, w.tail(10))

    def dump_aux(self, aux: Any) -> Any:
        """Window as lists."""
        return aux.dump()

    def load_aux(self, data: Any) -> Any:
        """Window from lists."""
        return Window.load(data)
