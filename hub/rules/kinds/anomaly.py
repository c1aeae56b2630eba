"""``anomaly``: robust rolling statistics (median/MAD z-score) or an EWMA band."""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import median
from typing import Any

from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import Kind, fmt
from hub.rules.model import AnomalyRule
from hub.rules.state import Series, Window

#: MAD x 1.4826 estimates the standard deviation of normally distributed data.
MAD_SCALE = 1.4826


class Anomaly(Kind):
    """Scores each new value against the window before it (the value is then added).

    No decision (None) until ``min_samples`` are in and ``warmup`` has passed.
    """

    def __init__(self, rule: AnomalyRule) -> None:
        super().__init__(rule)
        self.r = rule
        self.metric = rule.metric
        self.metrics = (rule.metric,)
        self.z = rule.z
        self.window = rule.window_ms
        self.cap = rule.max_samples
        self.min_samples = rule.min_samples
        self.warmup = rule.warmup_ms
        self.alpha = rule.alpha
        self.min_dev = rule.min_deviation
        self.ewma = rule.method == "ewma"
        self.direction = rule.direction
        self.primes = True
        # Without a window, max_samples readings at a typical 60 s interval.
        self.history_ms = rule.window_ms or rule.max_samples * 60_000 + rule.warmup_ms

    def new_aux(self) -> Any:
        """A window (mad) or [mean, var, n, start] (ewma)."""
        return [0.0, 0.0, 0.0, -1.0] if self.ewma else Window()

    def _verdict(self, dev: float, scale: float) -> bool:
        if abs(dev) <= self.min_dev:
            return False
        z = dev / scale if scale > 0 else math.copysign(math.inf, dev) if dev else 0.0
        if self.direction == "high":
            return z > self.z
        if self.direction == "low":
            return z < -self.z
        return abs(z) > self.z

    def step(
        self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading
    ) -> bool | None:
        """Score, then learn the value."""
        v = float(values[self.metric])
        if self.ewma:
            a: list[float] = s.aux
            if a[3] < 0:
                a[3] = ts
            verdict: bool | None = None
            mean, var, n = a[0], a[1], a[2]
            if n >= self.min_samples and ts - a[3] >= self.warmup:
                std = math.sqrt(var)
                s.value = (v - mean) / std if std > 0 else 0.0
                verdict = self._verdict(v - mean, std)
            if n == 0:
                a[0], a[1] = v, 0.0
            else:
                diff = v - mean
                incr = self.alpha * diff
                a[0] = mean + incr
                a[1] = (1 - self.alpha) * (var + diff * incr)
            a[2] = n + 1
            return verdict
        w: Window = s.aux
        if self.window is not None:
            w.drop_before(ts - self.window)
        verdict = None
        if len(w.v) >= self.min_samples and ts - w.start >= self.warmup:
            med = median(w.v)
            mad = median([abs(x - med) for x in w.v]) * MAD_SCALE
            s.value = (v - med) / mad if mad > 0 else 0.0
            verdict = self._verdict(v - med, mad)
        w.append(ts, v, self.cap)
        return verdict

    def late(self, s: Series, ts: int, values: Mapping[str, MetricValue]) -> None:
        """Late samples join the MAD window (order does not matter to a median)."""
        if not self.ewma:
            w: Window = s.aux
            w.insert(ts, float(values[self.metric]), self.cap)

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """The score and the statistics it was measured against."""
        r = self.r
        observed: dict[str, float] = {"z": s.value, "z_limit": self.z}
        readings: tuple[tuple[int, float], ...] = ()
        if self.ewma:
            a: list[float] = s.aux
            observed.update(mean=a[0], std=math.sqrt(a[1]), samples=a[2])
            basis = f"EWMA mean {fmt(a[0])}"
        else:
            w: Window = s.aux
            if len(w):
                med = median(w.v)
                observed.update(median=med, samples=len(w))
                readings = w.tail(10)
                basis = f"rolling median {fmt(med)} of {len(w)} readings"
            else:
                basis = "its rolling median"
        if state is RuleState.RESOLVED:
            summary = (
                f"{r.metric} on {s.dev[2]} is back within {fmt(self.z)} deviations of {basis}."
            )
        else:
            summary = (
                f"{r.metric} on {s.dev[2]} is {fmt(s.value)} robust deviations from {basis}"
                f" (limit {fmt(self.z)}){self.held(state)}."
            )
        return Explanation(summary, self.z, observed, readings)

    def dump_aux(self, aux: Any) -> Any:
        """Window or EWMA list."""
        return list(aux) if self.ewma else aux.dump()

    def load_aux(self, data: Any) -> Any:
        """Inverse of dump_aux."""
        return [float(x) for x in data] if self.ewma else Window.load(data)
