"""Rule kinds compiled for the engine: one module per kind."""

from __future__ import annotations

from collections.abc import Callable

from hub.rules.kinds.anomaly import Anomaly
from hub.rules.kinds.base import Kind
from hub.rules.kinds.citizen_reports import CitizenReports
from hub.rules.kinds.composite import Area, Composite
from hub.rules.kinds.flatline import Flatline
from hub.rules.kinds.no_data import NoData
from hub.rules.kinds.rate_of_change import RateOfChange
from hub.rules.kinds.sensor_fault import SensorFault
from hub.rules.kinds.threshold import Threshold
from hub.rules.model import (
    AnomalyRule,
    CitizenReportsRule,
    CompositeRule,
    FlatlineRule,
    NoDataRule,
    RateOfChangeRule,
    RuleModel,
    SensorFaultRule,
    ThresholdRule,
)


def compile_rule(rule: RuleModel, expected_interval_s: Callable[[str], float | None]) -> Kind:
    """The engine's compiled form of ``rule``."""
    if isinstance(rule, ThresholdRule):
        return Threshold(rule)
    if isinstance(rule, RateOfChangeRule):
        return RateOfChange(rule)
    if isinstance(rule, FlatlineRule):
        return Flatline(rule)
    if isinstance(rule, NoDataRule):
        return NoData(rule, expected_interval_s)
    if isinstance(rule, AnomalyRule):
        return Anomaly(rule)
    if isinstance(rule, CompositeRule):
        return Area(rule) if rule.area is not None else Composite(rule)
    if isinstance(rule, CitizenReportsRule):
        return CitizenReports(rule)
    if isinstance(rule, SensorFaultRule):
        return SensorFault(rule)
    raise TypeError(f"unknown rule type {type(rule).__name__}")


__all__ = ["Area", "CitizenReports", "Kind", "NoData", "compile_rule"]
