"""``no_data``: no reading from a device (or of one metric) for a while; fired by tick()."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hub.durations import format_duration
from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import Kind
from hub.rules.model import NoDataRule
from hub.rules.state import Series

#: Used when a device's asset type has no expected interval in the catalog.
FALLBACK_INTERVAL_S = 60.0


class NoData(Kind):
    """``aux`` is the hub time the device was last heard (receive time, else reading time)."""

    timer_native = True

    def __init__(
        self, rule: NoDataRule, expected_interval_s: Callable[[str], float | None]
    ) -> None:
        super().__init__(rule)
        self.r = rule
        self.metrics = (rule.metric,) if rule.metric else ()
        self._expected = expected_interval_s
        self._timeouts: dict[str, int] = {}

    def timeout_ms(self, asset_type: str) -> int:
        """``after``, or ``intervals`` times the asset type's expected interval."""
        if self.r.after_ms is not None:
            return self.r.after_ms
        t = self._timeouts.get(asset_type)
        if t is None:
            interval = self._expected(asset_type) or FALLBACK_INTERVAL_S
            t = self._timeouts[asset_type] = round(self.r.intervals * interval * 1000)
        return t

    def new_aux(self) -> int:
        """Never heard."""
        return 0

    def step(self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading) -> bool:
        """Data arrived: the condition is clear."""
        s.aux = max(int(s.aux), reading.received_ms or ts, ts)
        s.value = 0.0
        return False

    def silent(self, s: Series, now_ms: int) -> bool:
        """True when nothing arrived for longer than the timeout."""
        silent_ms = now_ms - int(s.aux)
        s.value = max(0.0, silent_ms / 1000)
        return silent_ms > self.timeout_ms(s.dev[1])

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """How long the device has been silent."""
        what = f"{self.r.metric} from {s.dev[2]}" if self.r.metric else f"reading from {s.dev[2]}"
        timeout = self.timeout_ms(s.dev[1])
        observed = {"silent_s": s.value, "timeout_s": timeout / 1000, "last_seen_ms": s.aux}
        if state is RuleState.RESOLVED:
            summary = f"Data from {s.dev[2]} arrives again."
        else:
            summary = (
                f"No {what} for {format_duration(int(s.value) * 1000)}"
                f" (limit {format_duration(timeout)}){self.held(state)}."
            )
        return Explanation(summary, timeout / 1000, observed)
