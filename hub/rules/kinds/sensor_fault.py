"""``sensor_fault``: readings flagged out of the plausible range (built in as ``sensor-fault``)."""

from __future__ import annotations

from collections.abc import Mapping

from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import Kind, fmt
from hub.rules.model import SensorFaultRule
from hub.rules.state import Series


class SensorFault(Kind):
    """Fires while a device's readings carry out-of-range metrics; a plausible one resolves.

    ``aux`` keeps the last implausible ``[[metric, value], ...]`` for the explanation.
    """

    def __init__(self, rule: SensorFaultRule) -> None:
        super().__init__(rule)
        self.r = rule

    def new_aux(self) -> list[list[object]]:
        """Nothing implausible yet."""
        return []

    def step(self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading) -> bool:
        """True while the reading has metrics outside their plausible range."""
        bad = reading.out_of_range
        if bad or reading.quality != "ok":
            s.aux = [[m, float(reading.metrics.get(m, 0))] for m in bad]
            s.value = float(len(bad))
            return True
        return False

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """Which metrics were implausible."""
        bad: list[list[object]] = s.aux
        observed = {str(m): float(v) for m, v in bad}  # type: ignore[arg-type]
        if state is RuleState.RESOLVED:
            summary = f"{s.dev[2]} sends plausible readings again."
        else:
            listed = ", ".join(f"{m}={fmt(float(v))}" for m, v in bad) or "quality flag"  # type: ignore[arg-type]
            summary = (
                f"{s.dev[2]} reports values outside the physically plausible range ({listed}):"
                f" a sensor fault, not evaluated by other rules{self.held(state)}."
            )
        return Explanation(summary, None, observed)
