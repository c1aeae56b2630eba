"""match.labels: rules that apply only to devices provisioned with given labels."""

from __future__ import annotations

from collections.abc import Mapping

from rules_helpers import T0, Driver, rules_from

from hub.messages import AREA_SOURCE, RuleState
from hub.rules.engine import RuleEngine

RULES = """
rules:
  - id: critical-high
    match: {asset_type: flood_gauge, labels: {criticality: high}}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
  - id: any-high
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: warning
"""


class Devices:
    """A stand-in for the registry: labels per device, a generation, and a call count."""

    def __init__(self, labels: dict[str, dict[str, str]]) -> None:
        self.by_device = labels
        self.generation = 0
        self.calls = 0

    def labels(self, device_id: str) -> Mapping[str, str]:
        self.calls += 1
        return self.by_device.get(device_id, {})

    def set(self, device_id: str, labels: dict[str, str]) -> None:
        self.by_device[device_id] = labels
        self.generation += 1


def driver(text: str, devices: Devices | None) -> Driver:
    engine = RuleEngine(
        rules_from(text),
        late_tolerance_s=300,
        expected_interval_s=lambda _a: 60.0,
        device_labels=devices.labels if devices is not None else None,
        labels_version=(lambda: devices.generation) if devices is not None else None,
    )
    return Driver(engine)


def fired_sources(d: Driver, rule_id: str) -> list[str]:
    return sorted(e.source for e in d.fired(rule_id))


def test_labels_rule_fires_only_for_the_labelled_device() -> None:
    """criticality=high matches g-high only; the unlabelled rule fires for every gauge."""
    devices = Devices({"g-high": {"criticality": "high", "zone": "3"}, "g-low": {}})
    d = driver(RULES, devices)
    for device in ("g-high", "g-low", "g-other"):
        d.read(0, device, water_level_m=3.5)
    assert fired_sources(d, "critical-high") == ["g-high"]
    assert fired_sources(d, "any-high") == ["g-high", "g-low", "g-other"]


def test_every_label_must_match_exactly() -> None:
    """Two labels: both must be equal (a differing value or a missing key does not match)."""
    text = RULES.replace("{criticality: high}", "{criticality: high, zone: '3'}")
    devices = Devices(
        {
            "both": {"criticality": "high", "zone": "3"},
            "other-zone": {"criticality": "high", "zone": "4"},
            "no-zone": {"criticality": "high"},
        }
    )
    d = driver(text, devices)
    for device in ("both", "other-zone", "no-zone"):
        d.read(0, device, water_level_m=3.5)
    assert fired_sources(d, "critical-high") == ["both"]


def test_without_a_labels_source_labels_rules_match_nothing() -> None:
    """An engine with no device labels (e.g. a bare backtest) never matches match.labels."""
    d = driver(RULES, None)
    d.read(0, "g-high", water_level_m=3.5)
    assert fired_sources(d, "critical-high") == []
    assert fired_sources(d, "any-high") == ["g-high"]


def test_labels_are_looked_up_once_per_device_plan_and_only_for_labels_rules() -> None:
    """The hot path costs no label lookups: one per labels rule when a device's plan is built."""
    devices = Devices({"g-high": {"criticality": "high"}})
    d = driver(RULES, devices)
    for i in range(50):
        d.read(i, "g-high", water_level_m=1.0)
    assert devices.calls == 1
    plain = driver(RULES.replace("labels: {criticality: high}", "district: d01"), devices)
    devices.calls = 0
    for i in range(50):
        plain.read(i, "g-high", water_level_m=1.0)
    assert devices.calls == 0


def test_provisioning_change_applies_at_the_next_tick() -> None:
    """Gaining the label makes the rule apply; losing it closes the firing alert."""
    devices = Devices({"g1": {}})
    d = driver(RULES, devices)
    d.read(0, "g1", water_level_m=3.5)
    assert fired_sources(d, "critical-high") == []
    devices.set("g1", {"criticality": "high"})
    d.tick(1)
    d.read(2, "g1", water_level_m=3.6)
    assert fired_sources(d, "critical-high") == ["g1"]

    devices.set("g1", {"criticality": "low"})
    evs = d.tick(3)
    assert [(e.rule_id, e.state, e.source) for e in evs] == [
        ("critical-high", RuleState.RESOLVED, "g1")
    ]
    assert "no longer matches" in evs[0].explanation.summary
    assert d.engine.counts()["critical-high"] == (0, 0)
    assert d.read(4, "g1", water_level_m=3.7) == []
    assert d.engine.counts()["any-high"] == (1, 0), "rules without labels are untouched"


def test_area_rule_counts_only_labelled_devices() -> None:
    """An area rule with match.labels counts the members that carry the label."""
    text = """
rules:
  - {id: high, kind: threshold, metric: water_level_m, op: ">", value: 3.0, severity: critical}
  - id: area
    match: {labels: {criticality: high}}
    kind: composite
    area: {rule: high, state: firing, at_least: 2}
    severity: emergency
"""
    devices = Devices({"a": {"criticality": "high"}, "b": {}, "c": {"criticality": "high"}})
    d = driver(text, devices)
    d.read(0, "a", water_level_m=4)
    d.read(1, "b", water_level_m=4)
    assert d.fired("area") == []
    d.read(2, "c", water_level_m=4)
    (ev,) = d.fired("area")
    assert ev.source == AREA_SOURCE
    assert ev.ts_ms == T0 + 2000
