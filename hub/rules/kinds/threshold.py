"""``threshold``: metric op value, with hysteresis through ``clear``."""

from __future__ import annotations

from collections.abc import Mapping

from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import HOLD, OPS, Kind, fmt
from hub.rules.model import ThresholdRule
from hub.rules.state import FIRING, Series


class Threshold(Kind):
    """Fires while ``metric op value``; with ``clear``, holds until the value passes it."""

    def __init__(self, rule: ThresholdRule) -> None:
        super().__init__(rule)
        self.r = rule
        self.metric = rule.metric
        self.metrics = (rule.metric,)
        self.cmp = OPS[rule.op]
        self.value = float(rule.value)
        self.clear = None if rule.clear is None else float(rule.clear)
        self.hold = HOLD.get(rule.op)

    def step(self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading) -> bool:
        """Compare the newest value (the clear level while firing)."""
        v = float(values[self.metric])
        s.value = v
        if s.state == FIRING and self.clear is not None and self.hold is not None:
            return self.hold(v, self.clear)
        return self.cmp(v, self.value)

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """Value, threshold and clear level."""
        src = s.dev[2]
        v = s.value
        r = self.r
        observed = {r.metric: v}
        if state is RuleState.RESOLVED:
            if self.clear is not None:
                what = f"fell back past the clear level {fmt(self.clear)}"
            else:
                what = f"no longer {r.op} {fmt(self.value)}"
            summary = f"{r.metric} on {src} is {fmt(v)}: {what}{self.held(state)}."
            return Explanation(
                summary,
                self.clear if self.clear is not None else self.value,
                observed,
                ((s.last_ts, v),),
            )
        summary = f"{r.metric} on {src} is {fmt(v)}, {r.op} {fmt(self.value)}{self.held(state)}."
        return Explanation(summary, self.value, observed, ((s.last_ts, v),))
