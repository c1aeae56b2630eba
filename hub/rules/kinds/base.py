"""What every rule kind provides to the engine."""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from hub.durations import format_duration
from hub.messages import Explanation, MetricValue, Reading, RuleState
from hub.rules.model import RuleModel, rule_version
from hub.rules.state import Series

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
#: While firing with ``clear``, the condition holds until the value is past ``clear``.
HOLD: dict[str, Callable[[float, float], bool]] = {
    ">": operator.ge,
    ">=": operator.ge,
    "<": operator.le,
    "<=": operator.le,
}


def _glob(pattern: str | None) -> Callable[[str], bool] | None:
    if pattern is None:
        return None
    if not any(c in pattern for c in "*?["):
        return pattern.__eq__
    return re.compile(fnmatch.translate(pattern)).match  # type: ignore[return-value]


def fmt(v: float) -> str:
    """A number for a human sentence: short, no float noise."""
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        return str(v)
    return f"{v:.4g}"


class Kind:
    """A compiled rule: matching, its per-series step, and its explanations.

    ``metrics`` lists the metrics whose arrival evaluates the rule (empty: every
    reading of a matching device). ``step`` returns whether the condition holds
    (None: no decision yet, e.g. warming up); when it is called ``s.last_ts`` is
    still the previous reading's time.
    """

    metrics: tuple[str, ...] = ()
    #: Timer-driven kinds (no_data, area) fire from tick() without fresh readings.
    timer_native = False
    #: Area rules are fed by other rules' state changes, not by readings.
    is_area = False
    #: ``citizen_reports`` rules are fed by citizens' reports, not by readings.
    is_reports = False
    #: Window kinds rebuild their windows from stored history on a cold start.
    primes = False
    #: How much history that takes.
    history_ms = 0

    def __init__(self, rule: RuleModel) -> None:
        self.rule = rule
        self.id = rule.id
        self.version = rule_version(rule)
        self.severity = rule.severity_level
        self.for_ms = rule.for_ms
        self.clear_for_ms = rule.clear_for_ms
        self.series: dict[str, Series] = {}
        m = rule.match
        self.asset_type_literal = (
            m.asset_type if m.asset_type and _glob(m.asset_type) == m.asset_type.__eq__ else None
        )
        self._asset = _glob(m.asset_type)
        self._district = _glob(m.district)
        self._device = _glob(m.device_id)
        self._labels = dict(m.labels)
        #: Only rules with ``match.labels`` ever ask for a device's labels.
        self.has_labels = bool(self._labels)

    def matches(
        self,
        district: str,
        asset_type: str,
        device_id: str,
        labels: Callable[[str], Mapping[str, str]] | None,
    ) -> bool:
        """True when this rule applies to the device."""
        if self._asset is not None and not self._asset(asset_type):
            return False
        if self._district is not None and not self._district(district):
            return False
        if self._device is not None and not self._device(device_id):
            return False
        if self._labels:
            have = labels(device_id) if labels is not None else {}
            return all(have.get(k) == v for k, v in self._labels.items())
        return True

    # ---------------------------------------------------------------- per kind

    def new_aux(self) -> Any:
        """Fresh kind-specific state for a new series."""
        return None

    def step(
        self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading
    ) -> bool | None:
        """Evaluate one reading; return whether the condition holds."""
        raise NotImplementedError

    def late(self, s: Series, ts: int, values: Mapping[str, MetricValue]) -> None:
        """A reading older than the newest evaluated, within tolerance: update windows only."""
        return

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """Why the series entered ``state``, in data and one sentence."""
        raise NotImplementedError

    def dump_aux(self, aux: Any) -> Any:
        """JSON-able kind state, detached from the live one (a snapshot is encoded later)."""
        return list(aux) if isinstance(aux, list) else aux

    def load_aux(self, data: Any) -> Any:
        """Inverse of :meth:`dump_aux`."""
        return data

    # ---------------------------------------------------------------- helpers

    def held(self, state: RuleState) -> str:
        """The ``for``/``clear_for`` clause of a sentence."""
        if state is RuleState.FIRING and self.for_ms:
            return f" for {format_duration(self.for_ms)}"
        if state is RuleState.PENDING and self.for_ms:
            return f"; fires if it holds for {format_duration(self.for_ms)}"
        if state is RuleState.RESOLVED and self.clear_for_ms:
            return f" for {format_duration(self.clear_for_ms)}"
        return ""
