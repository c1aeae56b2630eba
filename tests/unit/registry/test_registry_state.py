"""Registry state: last seen, latest values, status, stale, seq accounting, persistence."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import metrics
from hub.clock import FakeClock
from hub.messages import Reading, StatusUpdate
from hub.ports import UNRESTRICTED, DeviceCounts, DeviceFilter, DeviceStatusEvent, Scope
from hub.registry import registry as registry_module
from hub.registry.registry import GAP_GRACE_MS, SEQ_WINDOW, Registry
from hub.sqlite import connect

INTERVALS = {"flood_gauge": 60.0, "bridge": 60.0, "streetlight": 300.0}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "hub.db")
    yield conn
    conn.close()


def make(
    conn: sqlite3.Connection, clock: FakeClock, events: list[DeviceStatusEvent] | None = None
) -> Registry:
    return Registry(
        conn,
        clock=clock,
        expected_interval_s=INTERVALS.get,
        on_status_change=events.append if events is not None else None,
    )


def rd(
    seq: int | None,
    ts: int,
    device: str = "fg-1",
    received: int | None = None,
    **values: float,
) -> Reading:
    return Reading(
        district="d01",
        asset_type="flood_gauge",
        device_id=device,
        ts_ms=ts,
        metrics=values or {"water_level_m": float(seq or 0)},
        seq=seq,
        received_ms=received if received is not None else ts,
    )


def status(state: str, ts: int, device: str = "fg-1") -> StatusUpdate:
    return StatusUpdate("d01", "flood_gauge", device, state, ts)  # type: ignore[arg-type]


def test_unknown_device_is_auto_registered_unprovisioned(db: sqlite3.Connection) -> None:
    """A reading from an unknown device registers it (not provisioned) with its topic's names."""
    reg = make(db, FakeClock())
    reg.apply_readings([rd(1, 1000)])
    info = reg.get_device("fg-1")
    assert info is not None
    assert (info.district, info.asset_type, info.provisioned) == ("d01", "flood_gauge", False)
    assert not reg.is_provisioned("fg-1")
    assert reg.get_device("nope") is None


def test_latest_values_are_newest_by_ts_per_metric(db: sqlite3.Connection) -> None:
    """A backfilled (older) reading never overwrites a fresher value, but fills metrics it lacks."""
    reg = make(db, FakeClock())
    reg.apply_readings([rd(None, 5000, received=5000, water_level_m=2.0)])
    reg.apply_readings([rd(None, 1000, received=6000, water_level_m=1.0, battery_v=3.6)])
    info = reg.get_device("fg-1")
    assert info is not None
    assert info.latest == {"water_level_m": 2.0, "battery_v": 3.6}
    assert info.latest_ts_ms == 5000
    assert info.last_seen_ms == 6000  # receive time of the backfill: the device is alive


def test_status_newer_ts_wins_and_events_are_emitted(db: sqlite3.Connection) -> None:
    """Birth sets online, a later will offline, an older status is ignored; changes emit."""
    events: list[DeviceStatusEvent] = []
    reg = make(db, FakeClock(), events)
    reg.apply_statuses([status("online", 1000)])
    reg.apply_statuses([status("offline", 2000)])
    reg.apply_statuses([status("online", 1500)])  # stale retained birth: loses
    info = reg.get_device("fg-1")
    assert info is not None
    assert info.status == "offline"
    assert [e.status for e in events] == ["online", "offline"]


def test_first_reading_without_status_marks_online(db: sqlite3.Connection) -> None:
    """A device that never sent a status is online once it reports; an offline one stays offline."""
    reg = make(db, FakeClock())
    reg.apply_readings([rd(1, 1000)])
    assert reg.get_device("fg-1").status == "online"  # type: ignore[union-attr]
    reg.apply_statuses([status("offline", 2000, device="fg-2")])
    reg.apply_readings([rd(1, 1000, device="fg-2")])
    assert reg.get_device("fg-2").status == "offline"  # type: ignore[union-attr]


def test_stale_after_three_intervals_and_fresh_again(db: sqlite3.Connection) -> None:
    """No reading for 3x the expected interval makes a device stale; the next reading clears it."""
    clock = FakeClock()
    events: list[DeviceStatusEvent] = []
    reg = make(db, clock, events)
    now = clock.now_ms()
    reg.apply_readings([rd(1, now)])
    reg.tick(now + 180_000)
    assert not reg.get_device("fg-1").stale  # type: ignore[union-attr]
    reg.tick(now + 180_001)
    assert reg.get_device("fg-1").stale  # type: ignore[union-attr]
    assert events[-1].status == "stale"
    reg.apply_readings([rd(2, now + 200_000)])
    assert not reg.get_device("fg-1").stale  # type: ignore[union-attr]
    assert events[-1].status == "online"
    assert metrics.DEVICES.labels(status="online")._value.get() >= 1


def test_in_order_seq_counts_nothing(db: sqlite3.Connection) -> None:
    """Consecutive seq numbers are neither gaps nor duplicates."""
    reg = make(db, FakeClock())
    reg.apply_readings([rd(s, 1000 + s) for s in range(100)])
    info = reg.get_device("fg-1")
    assert info is not None
    assert (info.seq_gaps, info.seq_duplicates) == (0, 0)


def test_gap_then_backfill_fills_it(db: sqlite3.Connection) -> None:
    """Missing numbers show as gaps until a late backfill delivers them."""
    reg = make(db, FakeClock())
    before = metrics.SEQ_GAPS._value.get()
    reg.apply_readings([rd(s, 1000 + s) for s in (0, 1, 2, 6, 7)])
    assert reg.get_device("fg-1").seq_gaps == 3  # type: ignore[union-attr]
    reg.apply_readings([rd(s, 1000 + s) for s in (3, 4, 5)])
    info = reg.get_device("fg-1")
    assert info is not None
    assert (info.seq_gaps, info.seq_duplicates) == (0, 0)
    assert metrics.SEQ_GAPS._value.get() == before  # never confirmed, never counted


def test_redelivery_counts_duplicates(db: sqlite3.Connection) -> None:
    """The same seq delivered again is a duplicate, counted per device and in the metric."""
    reg = make(db, FakeClock())
    before = metrics.SEQ_DUPLICATES._value.get()
    reg.apply_readings([rd(s, 1000 + s) for s in (0, 1, 2, 2, 1)])
    assert reg.get_device("fg-1").seq_duplicates == 2  # type: ignore[union-attr]
    assert metrics.SEQ_DUPLICATES._value.get() == before + 2


def test_restart_at_zero_is_a_new_epoch(db: sqlite3.Connection) -> None:
    """A device restarting its counter at 0 (newer ts) is neither duplicates nor gaps."""
    reg = make(db, FakeClock())
    reg.apply_readings([rd(s, 1000 + s) for s in range(50)])
    reg.apply_readings([rd(s, 5000 + s) for s in range(10)])
    info = reg.get_device("fg-1")
    assert info is not None
    assert (info.seq_gaps, info.seq_duplicates) == (0, 0)


def test_gap_confirmed_after_grace_period(db: sqlite3.Connection) -> None:
    """A gap nobody fills is confirmed (and counted in the metric) after the grace period."""
    clock = FakeClock()
    reg = make(db, clock)
    now = clock.now_ms()
    before = metrics.SEQ_GAPS._value.get()
    reg.apply_readings([rd(0, now), rd(5, now)])
    reg.tick(now + GAP_GRACE_MS - 1)
    assert metrics.SEQ_GAPS._value.get() == before
    reg.tick(now + GAP_GRACE_MS)
    assert metrics.SEQ_GAPS._value.get() == before + 4
    reg.apply_readings([rd(2, now)])  # too late: confirmed gaps stay counted
    assert reg.get_device("fg-1").seq_gaps == 4  # type: ignore[union-attr]


def test_huge_jump_is_bounded(db: sqlite3.Connection) -> None:
    """A jump of millions keeps at most a window of pending numbers and counts the rest."""
    reg = make(db, FakeClock())
    reg.apply_readings([rd(0, 1000), rd(5_000_000, 2000)])
    info = reg.get_device("fg-1")
    assert info is not None
    assert info.seq_gaps == 4_999_999


def test_flush_and_reload_keep_state(db: sqlite3.Connection, tmp_path: Path) -> None:
    """State survives a flush and a new Registry on the same database (the hub's restart)."""
    clock = FakeClock()
    reg = make(db, clock)
    reg.upsert_device("fg-1", "d01", "flood_gauge", 51.5, -0.12, {"river": "Thames"})
    reg.apply_statuses([status("online", 1000)])
    reg.apply_readings([rd(s, 1000 + s) for s in (0, 1, 4, 4)])
    reg.flush()
    again = make(connect(tmp_path / "hub.db"), clock)
    info = again.get_device("fg-1")
    assert info is not None
    assert info.status == "online"
    assert info.provisioned
    assert (info.seq_gaps, info.seq_duplicates) == (2, 1)
    assert info.metadata == {"river": "Thames"}
    assert again.location("fg-1") == (51.5, -0.12)
    again.apply_readings([rd(2, 1002)])  # the pending gap survived the restart
    assert again.get_device("fg-1").seq_gaps == 1  # type: ignore[union-attr]


async def test_flush_from_a_thread_keeps_state_and_deletions(
    db: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush_async writes through its own connection; a device deleted meanwhile stays deleted."""
    clock = FakeClock()
    reg = Registry(
        db,
        clock=clock,
        expected_interval_s=INTERVALS.get,
        flush_conn=connect(tmp_path / "hub.db"),
    )
    reg.apply_readings([rd(0, 1000, device="fg-1"), rd(0, 1000, device="fg-2")])
    write = registry_module._write_rows

    def write_then_delete(rows: Sequence[Any], conn: sqlite3.Connection) -> None:
        write(rows, conn)
        # The API deletes fg-2 while the worker thread is writing (after its rows).
        reg._remove("fg-2")

    monkeypatch.setattr(registry_module, "_write_rows", write_then_delete)
    await reg.flush_async()
    again = make(connect(tmp_path / "hub.db"), clock)
    assert again.get_device("fg-1") is not None
    assert again.get_device("fg-2") is None


async def test_flush_from_a_thread_goes_in_chunks_and_keeps_what_failed_dirty(
    db: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background flush writes a few devices per transaction; when one chunk fails,
    its devices and the rest are written by the next flush."""
    monkeypatch.setattr(registry_module, "FLUSH_CHUNK", 2)
    monkeypatch.setattr(registry_module, "FLUSH_PAUSE_S", 0.0)
    clock = FakeClock()
    reg = Registry(
        db, clock=clock, expected_interval_s=INTERVALS.get, flush_conn=connect(tmp_path / "hub.db")
    )
    devices = [f"fg-{i}" for i in range(5)]
    reg.apply_readings([rd(0, 1000, device=d) for d in devices])
    write = registry_module._write_rows
    chunks: list[int] = []

    def second_chunk_fails(rows: Sequence[Any], conn: sqlite3.Connection) -> None:
        chunks.append(len(rows))
        if len(chunks) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        write(rows, conn)

    monkeypatch.setattr(registry_module, "_write_rows", second_chunk_fails)
    with pytest.raises(sqlite3.OperationalError):
        await reg.flush_async()
    assert chunks == [2, 2]
    stored = make(connect(tmp_path / "hub.db"), clock)
    assert sum(stored.get_device(d) is not None for d in devices) == 2
    await reg.flush_async()  # the three not written, in two chunks
    assert chunks == [2, 2, 2, 1]
    stored = make(connect(tmp_path / "hub.db"), clock)
    assert all(stored.get_device(d) is not None for d in devices)


async def test_flush_writes_devices_as_they_were_when_it_began(
    db: sqlite3.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readings applied while a flush is under way do not reach it: the stored registry
    matches the checkpoint's journal offset, so a replay from there counts nothing twice."""
    monkeypatch.setattr(registry_module, "FLUSH_CHUNK", 1)
    clock = FakeClock()
    reg = Registry(
        db, clock=clock, expected_interval_s=INTERVALS.get, flush_conn=connect(tmp_path / "hub.db")
    )
    reg.apply_readings([rd(s, 1000 + s, device=d) for d in ("fg-1", "fg-2") for s in (0, 1)])
    reg.begin_flush()  # the checkpoint: seq 0-1 of both
    flushing = asyncio.create_task(reg.flush_async())
    await asyncio.sleep(0)  # the first chunk is on its way
    reg.apply_readings([rd(2, 1002, device="fg-1"), rd(2, 1002, device="fg-2")])
    await flushing
    stored = make(connect(tmp_path / "hub.db"), clock)
    # The journal replay from the checkpoint: seq 2 again, counted once, in order.
    stored.apply_readings([rd(2, 1002, device="fg-1"), rd(2, 1002, device="fg-2")])
    for d in ("fg-1", "fg-2"):
        info = stored.get_device(d)
        assert info is not None
        assert (info.seq_gaps, info.seq_duplicates, info.last_seen_ms) == (0, 0, 1002), d
    await reg.flush_async()  # the newer state is dirty, for the next flush
    again = make(connect(tmp_path / "hub.db"), clock)
    assert again.get_device("fg-2").last_seen_ms == 1002  # type: ignore[union-attr]


def test_upsert_validates_and_delete_removes(db: sqlite3.Connection) -> None:
    """Bad names or coordinates are refused; delete removes a device, False when unknown."""
    reg = make(db, FakeClock())
    with pytest.raises(ValueError, match="district"):
        reg.upsert_device("fg-1", "D 01", "flood_gauge", None, None, {})
    with pytest.raises(ValueError, match="latitude"):
        reg.upsert_device("fg-1", "d01", "flood_gauge", 91.0, 0.0, {})
    reg.upsert_device("fg-1", "d01", "flood_gauge", None, None, {})
    assert reg.is_provisioned("fg-1")
    assert reg.delete_device("fg-1")
    assert not reg.delete_device("fg-1")
    assert reg.get_device("fg-1") is None


def test_claim_accepts_the_registered_place_and_refuses_another(db: sqlite3.Connection) -> None:
    """A device may publish only where the registry has it: another district or asset
    type gets that place back (device_mismatch), and the device is left as it was."""
    reg = make(db, FakeClock())
    reg.upsert_device("fg-d02-006", "d02", "flood_gauge", None, None, {})
    reg.apply_readings([rd(7, 1000, device="fg-d02-006", water_level_m=1.5)])
    before = reg.get_device("fg-d02-006")
    assert reg.claim("fg-d02-006", "d02", "flood_gauge") is None
    assert reg.claim("fg-d02-006", "d01", "flood_gauge") == ("d02", "flood_gauge")
    assert reg.claim("fg-d02-006", "d02", "bridge") == ("d02", "flood_gauge")
    assert reg.get_device("fg-d02-006") == before
    assert [d.device_id for d in reg.list_devices(DeviceFilter(district="d01"), UNRESTRICTED)] == []


def test_claim_places_a_new_device_where_it_first_publishes(db: sqlite3.Connection) -> None:
    """A device never seen is registered by its first claim (unprovisioned, no reading
    yet), so a second topic is refused even before the live stage has seen the first."""
    reg = make(db, FakeClock())
    assert reg.claim("fg-9", "d03", "flood_gauge") is None
    assert reg.claim("fg-9", "d04", "flood_gauge") == ("d03", "flood_gauge")
    info = reg.get_device("fg-9")
    assert info is not None
    assert (info.district, info.provisioned, info.last_seen_ms) == ("d03", False, None)
    reg.apply_readings([Reading("d03", "flood_gauge", "fg-9", 1000, {"water_level_m": 1.0})])
    info = reg.get_device("fg-9")
    assert info is not None
    assert (info.status, info.last_seen_ms) == ("online", 1000)
    assert reg.device_counts(UNRESTRICTED) == {("d03", "flood_gauge"): DeviceCounts(1, 1, 0, 0)}


def test_reprovisioning_moves_a_device_and_its_old_topic_is_refused(
    db: sqlite3.Connection,
) -> None:
    """Re-provisioned into another district, the device keeps its state and is accepted
    there only; its old topic is now the mismatch."""
    reg = make(db, FakeClock())
    reg.apply_readings([rd(1, 1000, device="fg-5")])
    reg.upsert_device("fg-5", "d02", "flood_gauge", None, None, {})
    assert reg.claim("fg-5", "d02", "flood_gauge") is None
    assert reg.claim("fg-5", "d01", "flood_gauge") == ("d02", "flood_gauge")
    info = reg.get_device("fg-5")
    assert info is not None
    assert (info.district, info.last_seen_ms) == ("d02", 1000)


def test_list_filters_scope_and_paging(db: sqlite3.Connection) -> None:
    """Listing honours filters, the caller's scope, offset and limit; districts follow scope."""
    reg = make(db, FakeClock())
    for i in range(5):
        reg.upsert_device(f"a{i}", "d01" if i < 3 else "d02", "bridge", None, None, {})
    d01 = Scope(districts=frozenset({"d01"}))
    assert [d.device_id for d in reg.list_devices(DeviceFilter(), d01)] == ["a0", "a1", "a2"]
    page = reg.list_devices(DeviceFilter(offset=1, limit=2), UNRESTRICTED)
    assert [d.device_id for d in page] == ["a1", "a2"]
    assert [d.device_id for d in reg.list_devices(DeviceFilter(district="d02"), UNRESTRICTED)] == [
        "a3",
        "a4",
    ]
    assert reg.districts(d01) == ["d01"]
    assert reg.districts(UNRESTRICTED) == ["d01", "d02"]


def test_import_in_another_process_is_picked_up_on_tick(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    """Devices provisioned through another connection (the CLI) appear after the next tick."""
    clock = FakeClock()
    reg = make(db, clock)
    other = make(connect(tmp_path / "hub.db"), clock)
    other.upsert_device("late-1", "d03", "bridge", None, None, {})
    assert not reg.is_provisioned("late-1")
    reg.tick(clock.now_ms())
    assert reg.is_provisioned("late-1")


def test_broken_listener_does_not_break_the_registry(db: sqlite3.Connection) -> None:
    """An exception in the status listener is logged, not raised into the consumer."""

    def boom(_: DeviceStatusEvent) -> None:
        raise RuntimeError("listener bug")

    reg = Registry(db, clock=FakeClock(), expected_interval_s=INTERVALS.get, on_status_change=boom)
    reg.apply_statuses([status("online", 1)])
    assert reg.get_device("fg-1").status == "online"  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=300),
    data=st.data(),
)
def test_any_delivery_order_of_a_complete_stream_has_no_gaps(
    total: int, data: st.DataObject
) -> None:
    """Every seq delivered once, in any order (within the window), ends with 0 gaps and 0 dups."""
    order = data.draw(st.permutations(list(range(total))))
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    reg = Registry(conn, clock=FakeClock(), expected_interval_s=INTERVALS.get)
    # The first reading sets the floor; deliver the lowest first, then any order.
    reg.apply_readings([rd(0, 1000)])
    reg.apply_readings([rd(s, 1000 + s) for s in order if s != 0])
    info = reg.get_device("fg-1")
    assert info is not None
    assert (info.seq_gaps, info.seq_duplicates) == (0, 0)
    assert total <= SEQ_WINDOW


@settings(max_examples=200, deadline=None)
@given(
    seqs=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=300),
)
def test_counts_are_never_negative_and_gaps_bounded(seqs: list[int]) -> None:
    """Any seq stream keeps counts non-negative and gaps no larger than the numbers skipped."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    reg = Registry(conn, clock=FakeClock(), expected_interval_s=INTERVALS.get)
    reg.apply_readings([rd(s, 1000 + i) for i, s in enumerate(seqs)])
    info = reg.get_device("fg-1")
    assert info is not None
    assert info.seq_gaps >= 0
    assert info.seq_duplicates >= 0
    assert info.seq_duplicates <= len(seqs)
    assert info.seq_gaps <= max(seqs) * len(seqs)
