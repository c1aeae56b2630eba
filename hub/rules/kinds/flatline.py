"""``flatline``: a metric stuck within ``epsilon`` for ``duration`` (fouled or frozen sensor)."""

from __future__ import annotations

from collections.abc import Mapping

from hub.durations import format_duration
from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import Kind, fmt
from hub.rules.model import FlatlineRule
from hub.rules.state import Series


class Flatline(Kind):
    """Tracks the current flat run in O(1): start time, min, max, count, last value.

    When a value leaves the band the run restarts at the previous sample if that
    one is within ``epsilon`` of the new value, else at the new value: the run is
    never overestimated, so the rule fires late rather than falsely.
    """

    def __init__(self, rule: FlatlineRule) -> None:
        super().__init__(rule)
        self.r = rule
        self.metric = rule.metric
        self.metrics = (rule.metric,)
        self.duration = rule.duration_ms
        self.eps = rule.epsilon
        self.min_samples = rule.min_samples

    def new_aux(self) -> list[float]:
        """[run_start_ms, min, max, count, last_value]."""
        return [0.0, 0.0, 0.0, 0.0, 0.0]

    def step(self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading) -> bool:
        """Extend or restart the flat run; true once it spans ``duration``."""
        v = float(values[self.metric])
        a: list[float] = s.aux
        if a[3] == 0:
            a[0], a[1], a[2], a[3] = ts, v, v, 1
        else:
            lo, hi = min(a[1], v), max(a[2], v)
            if hi - lo <= self.eps:
                a[1], a[2], a[3] = lo, hi, a[3] + 1
            elif abs(v - a[4]) <= self.eps:
                a[0], a[1], a[2], a[3] = s.last_ts, min(v, a[4]), max(v, a[4]), 2
            else:
                a[0], a[1], a[2], a[3] = ts, v, v, 1
        a[4] = v
        s.value = ts - a[0]
        return a[3] >= self.min_samples and ts - a[0] >= self.duration

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """How long and how flat."""
        r = self.r
        a: list[float] = s.aux
        observed = {"min": a[1], "max": a[2], "samples": a[3], "flat_s": s.value / 1000}
        if state is RuleState.RESOLVED:
            summary = f"{r.metric} on {s.dev[2]} moves again (now {fmt(a[4])})."
        else:
            summary = (
                f"{r.metric} on {s.dev[2]} has stayed within {fmt(self.eps)}"
                f" ({fmt(a[1])}..{fmt(a[2])}) for {format_duration(int(s.value))}"
                f" over {int(a[3])} readings: the sensor may be stuck{self.held(state)}."
            )
        return Explanation(summary, self.eps, observed, ((s.last_ts, a[4]),))
