"""The simulator's pure parts: fleet layout, signals, scenarios, payload builders."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.scenarios import (
    SCENARIO_DIR,
    Scenario,
    check_scenarios,
    load_scenario,
    resolve,
)
from devices.signals import SignalModel, hour_of_day, rounded, traffic
from devices.simulator import (
    CITY_CENTRE,
    MALFORMED_KINDS,
    build_fleet,
    json_reading,
    malformed_message,
    senml_pack,
)
from hub.catalog import check_catalog, load_catalog
from hub.messages import DEVICE_ID_RE, DISTRICT_RE, Reading
from hub.yamlfile import FileProblem

CATALOG = load_catalog()
DAY_MS = 86_400_000
MIDNIGHT = 1_764_028_800_000  # 2025-11-25T00:00:00Z


def test_demo_fleet_spreads_over_districts_and_every_asset_type() -> None:
    """320 devices over 8 districts: 40 each, every district has every asset type."""
    fleet = build_fleet(320, 8, seed=1)
    assert len(fleet) == 320
    assert len({d.device_id for d in fleet}) == 320
    assert Counter(d.district for d in fleet) == {f"d{k:02d}": 40 for k in range(1, 9)}
    for district in {d.district for d in fleet}:
        types = {d.asset_type for d in fleet if d.district == district}
        assert types == set(CATALOG.asset_types())
    assert sum(1 for d in fleet if d.district == "d03" and d.asset_type == "flood_gauge") >= 5
    for d in fleet:
        assert DEVICE_ID_RE.fullmatch(d.device_id)
        assert DISTRICT_RE.fullmatch(d.district)
        assert d.device_id.split("-")[1] == d.district
        km = math.hypot(
            (d.latitude - CITY_CENTRE[0]) * 111.32,
            (d.longitude - CITY_CENTRE[1]) * 111.32 * math.cos(math.radians(CITY_CENTRE[0])),
        )
        assert km < 5.0


def test_fleet_is_deterministic_in_its_seed() -> None:
    """The same arguments give the same fleet; another seed moves the devices."""
    assert build_fleet(50, 3, seed=7) == build_fleet(50, 3, seed=7)
    assert build_fleet(50, 3, seed=7) != build_fleet(50, 3, seed=8)
    assert build_fleet(1, 1)[0].device_id == "fg-d01-001"
    with pytest.raises(ValueError):
        build_fleet(0, 1)


def _day_of_samples(asset_type: str, seed: int = 1) -> list[dict[str, float | int | bool]]:
    spec = next(d for d in build_fleet(80, 2, seed) if d.asset_type == asset_type)
    model = SignalModel(spec, seed)
    return [rounded(model.sample(MIDNIGHT + k * 60_000)) for k in range(0, 24 * 60, 5)]


@pytest.mark.parametrize("asset_type", sorted(load_catalog().asset_types()))
def test_natural_signals_stay_plausible_and_alarm_free(asset_type: str) -> None:
    """A day of natural readings has every catalog metric, inside its plausible range."""
    spec = CATALOG.spec(asset_type)
    assert spec is not None
    for seed in (1, 2, 3):
        for values in _day_of_samples(asset_type, seed):
            assert set(values) == set(spec.metrics)
            reading = Reading("d01", asset_type, "x", MIDNIGHT, values)
            assert CATALOG.flag(reading) is reading, values
            if asset_type == "flood_gauge":
                assert float(values["water_level_m"]) < 2.8  # below the flood rules
            if asset_type == "manhole":
                assert float(values["methane_pct_lel"]) < 10  # below the gas rules
            if asset_type == "water_main":
                assert float(values["pressure_bar"]) > 2.0


def test_daily_cycles() -> None:
    """Streetlights burn at night only; traffic peaks at rush hour; the noise is not flat."""
    lights = _day_of_samples("streetlight")
    at = {hour: lights[hour * 12] for hour in range(24)}
    assert at[23]["lamp_on"] is True
    assert at[2]["lamp_on"] is True
    assert at[12]["lamp_on"] is False
    assert float(at[12]["power_w"]) < 1
    assert float(at[23]["power_w"]) > 50
    assert traffic(8.0) > 3 * traffic(3.0)
    assert traffic(17.5) > 3 * traffic(3.0)
    counts = _day_of_samples("traffic_counter")
    assert sum(int(c["vehicles_per_min"]) for c in counts[8 * 12 : 9 * 12]) > 3 * sum(
        int(c["vehicles_per_min"]) for c in counts[2 * 12 : 3 * 12]
    )
    levels = [v["water_level_m"] for v in _day_of_samples("flood_gauge")]
    assert len(set(levels)) > len(levels) // 4  # a real gauge never flatlines
    assert hour_of_day(MIDNIGHT + 90 * 60_000) == 1.5


def test_battery_decays_slowly() -> None:
    """A battery loses a little voltage a day, jumps up only when replaced, stays in range."""
    spec = next(d for d in build_fleet(10, 1) if d.asset_type == "flood_gauge")
    model = SignalModel(spec, 1)
    days = [float(model.sample(MIDNIGHT + day * DAY_MS)["battery_v"]) for day in range(60)]
    steps = [b - a for a, b in itertools.pairwise(days)]
    assert all(-0.02 < step < 0.02 or step > 0.4 for step in steps)
    assert sum(1 for step in steps if step > 0.4) <= 1
    assert sum(steps) < 0.02 or any(step > 0.4 for step in steps)
    assert all(2.5 < v < 4.5 for v in days)


def _scenario(events: list[dict[str, object]]) -> Scenario:
    return Scenario.model_validate({"name": "t", "events": events})


def test_ramp_rises_holds_and_returns() -> None:
    """A ramp's progress goes 0 -> 1 over its duration, holds, then goes back to 0."""
    fleet = build_fleet(14, 1)
    resolved, warnings = resolve(
        _scenario(
            [
                {
                    "at": "10s",
                    "kind": "ramp",
                    "devices": ["fg-d01-001"],
                    "metric": "water_level_m",
                    "to": 3.5,
                    "duration": "10s",
                    "hold": "20s",
                }
            ]
        ),
        fleet,
    )
    assert warnings == []
    progress = {t: resolved.effects("fg-d01-001", t).ramps for t in (5, 15, 25, 45, 55)}
    assert progress[5] == ()
    assert progress[15] == (("water_level_m", 3.5, 0.5),)
    assert progress[25][0][2] == 1.0
    assert progress[45][0][2] == pytest.approx(0.5)
    assert progress[55] == ()
    assert resolved.effects("wm-d01-001", 15).ramps == ()


def test_outage_silent_and_flatline_effects_and_actions() -> None:
    """Outage buffers and drops/restores the link; silent stops and drops later; flatline sticks."""
    fleet = build_fleet(14, 1)
    resolved, _ = resolve(
        _scenario(
            [
                {"at": "5s", "kind": "outage", "devices": ["tc-d01-001"], "duration": "10s"},
                {"at": "5s", "kind": "silent", "devices": ["fg-d01-001"], "offline_after": "3s"},
                {"at": "1s", "kind": "flatline", "devices": ["aq-d01-001"], "duration": "2s"},
                {
                    "at": "2s",
                    "kind": "flatline",
                    "devices": ["mh-d01-001"],
                    "metrics": ["h2s_ppm"],
                },
                {"at": "3s", "kind": "flatline", "devices": ["mh-d01-001"], "duration": "1s"},
            ]
        ),
        fleet,
    )
    assert resolved.effects("tc-d01-001", 6).buffering
    assert not resolved.effects("tc-d01-001", 16).buffering
    assert resolved.effects("fg-d01-001", 100).silent
    assert resolved.effects("aq-d01-001", 2).flatline == frozenset()
    assert resolved.effects("aq-d01-001", 4).flatline is None
    assert resolved.effects("mh-d01-001", 2.5).flatline == frozenset({"h2s_ppm"})
    assert resolved.effects("mh-d01-001", 3.5).flatline == frozenset()  # all of them
    assert resolved.effects("mh-d01-001", 4.5).flatline == frozenset({"h2s_ppm"})
    actions = [(a.at, a.device_id, a.kind) for a in resolved.actions]
    assert actions == [
        (5.0, "tc-d01-001", "drop"),
        (8.0, "fg-d01-001", "drop"),
        (15.0, "tc-d01-001", "restore"),
    ]


def test_select_and_warnings() -> None:
    """select picks the first `count` matching devices by id; misfits are warned about."""
    fleet = build_fleet(80, 2)
    resolved, warnings = resolve(
        _scenario(
            [
                {
                    "at": 0,
                    "kind": "ramp",
                    "select": {"district": "d02", "asset_type": "flood_gauge", "count": 3},
                    "metric": "water_level_m",
                    "to": 3.3,
                },
                {
                    "at": 0,
                    "kind": "ramp",
                    "select": {"district": "d09", "count": 2},
                    "metric": "x",
                    "to": 1,
                },
                {"at": 0, "kind": "ramp", "devices": ["mh-d01-001"], "metric": "nope", "to": 1},
            ]
        ),
        fleet,
        {t: list(CATALOG.spec(t).metrics) for t in CATALOG.asset_types()},  # type: ignore[union-attr]
    )
    assert resolved.devices() == ["fg-d02-001", "fg-d02-002", "fg-d02-003"]
    assert any("matched 0 of 2" in w for w in warnings)
    assert any("mh-d01-001 (manhole) has no metric nope" in w for w in warnings)


def test_demo_scenario_fits_the_demo_fleet() -> None:
    """Every event of demo.yaml finds its devices and metrics in the 320-device demo fleet."""
    assert check_scenarios() == []
    scenario = load_scenario("demo")
    kinds = {e.kind for e in scenario.events}
    assert kinds == {"ramp", "flatline", "silent", "outage"}
    _, warnings = resolve(
        scenario,
        build_fleet(320, 8),
        {t: list(CATALOG.spec(t).metrics) for t in CATALOG.asset_types()},  # type: ignore[union-attr]
    )
    assert warnings == []
    flood = [
        e
        for e in scenario.events
        if e.kind == "ramp" and e.metric == "water_level_m"  # type: ignore[union-attr]
    ]
    assert len(flood) == 2
    assert all(e.to - e.jitter > 3.2 for e in flood)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nevents:\n  - {at: 1s, kind: explode, devices: [a]}\n",
            ":3: events[0]: Input tag 'explode'",
        ),
        (
            "name: x\nevents:\n  - at: 1s\n    kind: ramp\n    devices: [a]\n"
            "    metrik: m\n    to: 1\n",
            ":6: events[0].metrik: unknown field",
        ),
        (
            "name: x\nevents:\n  - at: 1s\n    kind: ramp\n    devices: [a]\n    to: 1\n",
            ":3: events[0].metric: required field is missing",
        ),
        (
            "name: x\nevents:\n  - at: soon\n    kind: silent\n    devices: [a]\n",
            ":3: events[0].at: 'soon' is not a duration",
        ),
        (
            "name: x\nevents:\n  - {at: 1s, kind: outage, duration: 5s}\n",
            ":3: events[0]: give exactly one of devices",
        ),
        ("name: x\nevents:\n  - {at: 1s, kind: outage, devices: [a]}\n", "duration: required"),
        ("name: x\ncolour: red\n", ":2: colour: unknown field"),
    ],
)
def test_broken_scenarios_give_file_line_messages(tmp_path: Path, text: str, expected: str) -> None:
    """A broken scenario file names file, line and key path; loading it raises FileProblem."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FileProblem) as info:
        load_scenario(path)
    assert any(m.startswith(f"{path}:") and expected in m for m in info.value.messages), (
        info.value.messages
    )
    assert check_scenarios([path]) == info.value.messages


def test_unknown_scenario_name_lists_the_shipped_ones() -> None:
    """--scenario with an unknown name says which scenarios exist."""
    with pytest.raises(FileProblem, match="demo"):
        load_scenario("no-such-scenario")
    assert (SCENARIO_DIR / "demo.yaml").exists()


def test_senml_pack_resolves_to_the_readings() -> None:
    """A SenML pack carries base name and time once; later readings carry their offset."""
    readings = [
        (1_764_000_000_000, 1, {"water_level_m": 1.5, "battery_v": 3.7}),
        (1_764_000_005_000, 2, {"water_level_m": 1.6, "battery_v": 3.7}),
    ]
    pack = senml_pack("fg-d01-001", readings, {"water_level_m": "m"})
    assert pack[0]["bn"] == "urn:dev:id:fg-d01-001:"
    assert pack[0]["bt"] == 1_764_000_000.0
    resolved = [(pack[0]["bt"] + r.get("t", 0), r["n"], r["v"]) for r in pack]
    assert resolved == [
        (1_764_000_000.0, "water_level_m", 1.5),
        (1_764_000_000.0, "battery_v", 3.7),
        (1_764_000_005.0, "water_level_m", 1.6),
        (1_764_000_005.0, "battery_v", 3.7),
    ]
    assert pack[0]["u"] == "m"
    assert "u" not in pack[1]
    lamp = senml_pack("sl-1", [(1, 1, {"lamp_on": True})], {})
    assert lamp[0]["vb"] is True


@given(st.sampled_from(MALFORMED_KINDS))
def test_malformed_messages_break_the_contract(kind: str) -> None:
    """Every malformed kind is something CONTRACT §1-2 rejects (topic or payload)."""
    spec = build_fleet(1, 1)[0]
    topic, payload = malformed_message(kind, "city", spec, MIDNIGHT, "water_level_m")
    good = json.dumps(json_reading(MIDNIGHT, 1, {"water_level_m": 1.0})).encode()
    assert (topic, payload) != ("city/d01/flood_gauge/fg-d01-001/telemetry", good)
    if kind == "bad_topic":
        assert not DISTRICT_RE.fullmatch(topic.split("/")[1])
        return
    try:
        doc = json.loads(payload, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, UnicodeDecodeError):
        return
    assert not isinstance(doc, dict) or not _valid_metrics(doc) or doc["ts"] > MIDNIGHT + 300_000


def _valid_metrics(doc: dict[str, object]) -> bool:
    metrics = doc.get("metrics")
    return (
        isinstance(metrics, dict)
        and bool(metrics)
        and all(
            isinstance(k, str) and k.islower() and " " not in k and isinstance(v, int | float)
            for k, v in metrics.items()
        )
    )


def test_scripted_effects_on_a_devices_readings() -> None:
    """A full ramp lands on its target (with sensor noise); a flatline repeats values exactly."""
    from devices.scenarios import Effects
    from devices.simulator import Fleet, _Device

    fleet = Fleet("mqtt://127.0.0.1:1", devices=7, districts=1)  # never connected here
    gauge = _Device(fleet, fleet.specs[0])
    assert gauge.spec.asset_type == "flood_gauge"
    ramped = gauge._apply(
        Effects(ramps=(("water_level_m", 3.5, 1.0),)), gauge.model.sample(MIDNIGHT)
    )
    assert abs(float(ramped["water_level_m"]) - 3.5) < 0.05
    half = gauge._apply(
        Effects(ramps=(("water_level_m", 3.5, 0.5),)), gauge.model.sample(MIDNIGHT + 5000)
    )
    assert 1.5 < float(half["water_level_m"]) < 3.0
    stuck = Effects(flatline=frozenset({"water_level_m"}), flatline_since=30.0)
    first = gauge._apply(stuck, gauge.model.sample(MIDNIGHT + 10_000))
    later = [
        gauge._apply(stuck, gauge.model.sample(MIDNIGHT + 10_000 + k * 5000)) for k in range(1, 20)
    ]
    assert {v["water_level_m"] for v in later} == {first["water_level_m"]}
    assert len({v["battery_v"] for v in later}) > 1  # only the named metric is stuck


_YAML_BITS = st.sampled_from(
    [
        "name: x\n",
        "events:\n",
        "  - at: 1s\n",
        "    kind: ramp\n",
        "    kind: outage\n",
        "    devices: [a]\n",
        "    select: {district: d01}\n",
        "    metric: m\n",
        "    to: 1\n",
        "    duration: -5s\n",
        "    hold: .nan\n",
        "  - 42\n",
        "[\n",
        "{bad\n",
        ": :\n",
        "\t\n",
        "- - -\n",
        "at: !!binary AAAA\n",
    ]
)


@given(st.lists(_YAML_BITS, max_size=12), st.text(max_size=30))
def test_scenario_loading_raises_only_file_problems(
    tmp_path_factory: pytest.TempPathFactory, bits: list[str], noise: str
) -> None:
    """Whatever the file holds, loading gives a Scenario or FileProblem, never another error."""
    path = tmp_path_factory.mktemp("scn") / "s.yaml"
    path.write_text("".join(bits) + noise)
    messages: list[str] = []
    try:
        load_scenario(path)
    except FileProblem as exc:
        messages = exc.messages
    assert all(m.startswith(f"{path}:") for m in messages)


@given(st.lists(_YAML_BITS, max_size=12), st.text(max_size=30))
def test_catalog_checking_never_raises(
    tmp_path_factory: pytest.TempPathFactory, bits: list[str], noise: str
) -> None:
    """check_catalog turns any file content into messages (file:line), never an exception."""
    folder = tmp_path_factory.mktemp("cat")
    (folder / "x.yaml").write_text("".join(bits) + noise)
    for message in check_catalog(folder):
        assert message.startswith(f"{folder / 'x.yaml'}:")


def test_scenario_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m devices.scenarios check` exits 0 on the shipped files, 1 with file:line lines."""
    from devices.scenarios import main

    assert main(["check"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nevents:\n  - {at: 1s, kind: outage, devices: [a], duration: 0s}\n")
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:3: events[0].duration:" in capsys.readouterr().out
    assert main([]) == 2
