"""The registry's read indexes (counts per district/asset type, sorted ids) match its devices."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.clock import FakeClock
from hub.messages import Reading, StatusUpdate
from hub.ports import UNRESTRICTED, DeviceFilter, DeviceInfo, Scope
from hub.registry.registry import Registry
from hub.sqlite import connect

INTERVALS = {"flood_gauge": 60.0, "bridge": 120.0}
DEVICES = [f"x{i}" for i in range(6)]
DISTRICTS = ["d01", "d02", "d03"]
ASSET_TYPES = list(INTERVALS)
EVERYTHING = 10**6

device = st.sampled_from(DEVICES)
district = st.sampled_from(DISTRICTS)
asset_type = st.sampled_from(ASSET_TYPES)
operation = st.one_of(
    st.tuples(st.just("reading"), device, district, asset_type),
    st.tuples(st.just("status"), device, district, st.sampled_from(["online", "offline"])),
    st.tuples(st.just("advance"), st.integers(min_value=1, max_value=10)),
    st.tuples(st.just("upsert"), device, district, asset_type),
    st.tuples(st.just("delete"), device),
    st.tuples(st.just("elsewhere_upsert"), device, district, asset_type),
    st.tuples(st.just("elsewhere_delete"), device),
    st.tuples(st.just("restart")),
)
SCOPES = [
    UNRESTRICTED,
    Scope(districts=frozenset({"d01"})),
    Scope(asset_types=frozenset({"bridge"})),
    Scope(districts=frozenset({"d02", "d03"}), asset_types=frozenset({"flood_gauge"})),
    Scope(districts=frozenset()),
]


def _make(conn: sqlite3.Connection, clock: FakeClock) -> Registry:
    return Registry(conn, clock=clock, expected_interval_s=INTERVALS.get)


def _truth(reg: Registry) -> list[DeviceInfo]:
    """Every device, found one by one (not through the indexes), sorted by id."""
    return [d for d in (reg.get_device(i) for i in sorted(DEVICES)) if d is not None]


def _apply(reg: Registry, other: Registry, clock: FakeClock, op: tuple[Any, ...]) -> None:
    kind = op[0]
    now = clock.now_ms()
    if kind == "reading":
        reg.apply_readings([Reading(op[2], op[3], op[1], now, {"v": 1.0}, received_ms=now)])
    elif kind == "status":
        reg.apply_statuses([StatusUpdate(op[2], "flood_gauge", op[1], op[3], now)])
    elif kind == "advance":
        clock.advance(op[1] * 60.0)
        reg.tick(clock.now_ms())
    elif kind == "upsert":
        reg.upsert_device(op[1], op[2], op[3], None, None, {})
    elif kind == "delete":
        reg.delete_device(op[1])
    elif kind == "elsewhere_upsert":  # `hub devices import` in another process
        other.upsert_device(op[1], op[2], op[3], None, None, {})
        reg.tick(clock.now_ms())
    elif kind == "elsewhere_delete":
        if other.get_device(op[1]) is None:
            other.tick(clock.now_ms())
        other.delete_device(op[1])
        reg.tick(clock.now_ms())


def _check(reg: Registry) -> None:
    truth = _truth(reg)
    for scope in SCOPES:
        seen = [d for d in truth if scope.allows(d.district, d.asset_type)]
        expected: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        cells = Counter((d.district, d.asset_type) for d in seen)
        for key in cells:
            group = [d for d in seen if (d.district, d.asset_type) == key]
            expected[key] = (
                len(group),
                sum(d.status == "online" for d in group),
                sum(d.status == "offline" for d in group),
                sum(d.stale for d in group),
            )
        counts = reg.device_counts(scope)
        got = {k: (c.devices, c.online, c.offline, c.stale) for k, c in counts.items()}
        assert got == expected
        for name in DISTRICTS:
            one = reg.device_counts(scope, name)
            assert one == {k: v for k, v in counts.items() if k[0] == name}
            listed = reg.list_devices(DeviceFilter(district=name, limit=EVERYTHING), scope)
            assert listed == [d for d in seen if d.district == name]
        assert reg.list_devices(DeviceFilter(limit=EVERYTHING), scope) == seen
        assert reg.list_devices(DeviceFilter(stale=False, limit=EVERYTHING), scope) == [
            d for d in seen if not d.stale
        ]
        assert reg.list_devices(DeviceFilter(offset=1, limit=2), scope) == seen[1:3]
        assert reg.districts(scope) == sorted({d.district for d in seen})


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, max_size=40))
def test_counts_and_order_follow_every_change(ops: list[tuple[Any, ...]]) -> None:
    """After any mix of readings, statuses, staleness, provisioning here or elsewhere, deletes and
    restarts, the maintained counts and sorted lists equal a recount of the devices."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.db"
        clock = FakeClock()
        conn, other_conn = connect(path), connect(path)
        reg, other = _make(conn, clock), _make(other_conn, clock)
        try:
            for op in ops:
                if op[0] == "restart":
                    reg.flush()
                    conn.close()
                    conn = connect(path)
                    reg = _make(conn, clock)
                else:
                    _apply(reg, other, clock, op)
                _check(reg)
        finally:
            conn.close()
            other_conn.close()


def test_counts_per_district_and_asset_type() -> None:
    """Counts say how many devices are online, offline, unknown and stale, per cell."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    clock = FakeClock()
    reg = _make(conn, clock)
    now = clock.now_ms()
    reg.apply_readings([Reading("d01", "flood_gauge", "a", now, {"v": 1.0}, received_ms=now)])
    reg.apply_statuses([StatusUpdate("d01", "flood_gauge", "b", "offline", now)])
    reg.upsert_device("c", "d01", "flood_gauge", None, None, {})
    reg.upsert_device("d", "d02", "bridge", None, None, {})
    cell = reg.device_counts(UNRESTRICTED)[("d01", "flood_gauge")]
    assert (cell.devices, cell.online, cell.offline, cell.unknown, cell.stale) == (3, 1, 1, 1, 0)
    clock.advance(4 * 60.0)
    reg.tick(clock.now_ms())
    assert reg.device_counts(UNRESTRICTED)[("d01", "flood_gauge")].stale == 3
    assert list(reg.device_counts(Scope(districts=frozenset({"d02"})))) == [("d02", "bridge")]
    reg.delete_device("d")
    assert ("d02", "bridge") not in reg.device_counts(UNRESTRICTED)


def test_staleness_is_found_in_slices_and_the_gauge_counts_everyone(
    monkeypatch: Any,
) -> None:
    """Each tick looks at a slice of the devices, in turn: every silent device is stale
    after enough ticks, and the hub_devices gauge counts all devices on every tick."""
    from hub import metrics
    from hub.registry import registry as registry_module

    monkeypatch.setattr(registry_module, "STALE_SCAN_PER_TICK", 2)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    clock = FakeClock()
    reg = _make(conn, clock)
    now = clock.now_ms()
    reg.apply_readings(
        [
            Reading("d01", "flood_gauge", f"fg-{i}", now, {"v": 1.0}, received_ms=now)
            for i in range(5)
        ]
    )
    clock.advance(4 * 60.0)

    def stale() -> int:
        return reg.device_counts(UNRESTRICTED)[("d01", "flood_gauge")].stale

    seen = []
    for _ in range(3):
        reg.tick(clock.now_ms())
        seen.append(stale())
        assert metrics.DEVICES.labels(status="online")._value.get() == 5
    assert seen == [2, 4, 5]
    assert metrics.DEVICES.labels(status="stale")._value.get() == 5
