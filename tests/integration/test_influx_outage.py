"""InfluxDB stopped under the store: writes wait and retry, nothing is lost, health says so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hub import records
from hub.clock import FakeClock
from hub.journal import Journal
from hub.messages import Reading
from hub.settings import InfluxSettings, JournalSettings
from hub.store.base import StoreUnavailable
from hub.store.influx import InfluxStore
from hub.store.sink import StoreSink
from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, env_for
from tests.services import InfluxDB1, Mosquitto, wait_for

pytestmark = pytest.mark.integration

BASE = 1_764_000_000_000


def _readings(n: int, start: int = 0) -> list[Reading]:
    return [
        Reading("d01", "flood_gauge", "fg-1", BASE + i * 1000, {"water_level_m": i / 100}, seq=i)
        for i in range(start, start + n)
    ]


async def test_stopped_influx_means_unavailable_then_everything_lands(
    own_influxdb: InfluxDB1, names: Names, fake_clock: FakeClock
) -> None:
    """Writes raise StoreUnavailable while InfluxDB is down; the sink retries and loses nothing."""
    db = names.database()
    settings = InfluxSettings(url=own_influxdb.url, database=db, batch_size=40, timeout_s=2)
    store = InfluxStore(settings, clock=fake_clock)
    await store.open()
    sink = StoreSink(store, settings, clock=fake_clock, retry_min_s=0.05, retry_max_s=0.2)
    try:
        assert await sink.write(_readings(50)) == []
        await asyncio.to_thread(own_influxdb.stop)
        with pytest.raises(StoreUnavailable):
            await store.write(_readings(1, 50))
        assert not await store.ping()

        pending = asyncio.create_task(sink.write(_readings(150, 50)))
        deadline = time.monotonic() + 10
        while sink.healthy:
            assert time.monotonic() < deadline, "the sink never noticed the outage"
            await asyncio.sleep(0.02)
        assert sink.last_error
        assert not pending.done()

        await asyncio.to_thread(own_influxdb.start)
        refused = await asyncio.wait_for(pending, 30)
        assert refused == []
        assert sink.healthy
    finally:
        await store.close()
    assert own_influxdb.count(db, "flood_gauge") == 200
    rows = own_influxdb.query('SELECT "seq" FROM "flood_gauge"', db)
    seqs = sorted(v[1] for v in rows["results"][0]["series"][0]["values"])  # type: ignore[index]
    assert seqs == list(range(200))


async def test_open_raises_unavailable_when_nothing_listens(fake_clock: FakeClock) -> None:
    """open() on an address where no InfluxDB answers raises StoreUnavailable, not a crash."""
    from tests.services import free_port

    store = InfluxStore(
        InfluxSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=1), clock=fake_clock
    )
    try:
        with pytest.raises(StoreUnavailable):
            await store.open()
        with pytest.raises(StoreUnavailable):
            await store.write(_readings(1))
    finally:
        await store.close()


async def test_partial_write_refuses_one_point_and_keeps_the_batch(
    influxdb: InfluxDB1, names: Names, fake_clock: FakeClock
) -> None:
    """With a real 1.x: one field-type conflict in 500 points -> only that point comes back."""
    db = names.database()
    settings = InfluxSettings(url=influxdb.url, database=db)
    store = InfluxStore(settings, clock=fake_clock)
    await store.open()
    sink = StoreSink(store, settings, clock=fake_clock)
    try:
        await sink.write(_readings(1))
        batch = _readings(500, 1)
        bad = Reading("d02", "flood_gauge", "fg-2", BASE + 5, {"water_level_m": True}, seq=9999)
        batch.insert(250, bad)
        refused = await sink.write(batch)
    finally:
        await store.close()
    assert [r for r, _ in refused] == [bad]
    assert "water_level_m" in refused[0][1]
    assert influxdb.count(db, "flood_gauge") == 501


async def test_journal_holds_readings_through_an_outage(
    own_influxdb: InfluxDB1, names: Names, fake_clock: FakeClock, tmp_path: Path
) -> None:
    """Journal -> sink -> InfluxDB as the runtime wires it: lag grows while down, drains after."""
    db = names.database()
    settings = InfluxSettings(url=own_influxdb.url, database=db, batch_size=100, timeout_s=2)
    store = InfluxStore(settings, clock=fake_clock)
    await store.open()
    sink = StoreSink(store, settings, clock=fake_clock, retry_min_s=0.05, retry_max_s=0.2)
    journal_settings = JournalSettings(segment_bytes=64 * 1024, commit_interval_ms=2)
    async with Journal(tmp_path / "journal", journal_settings, clock=fake_clock) as journal:
        reader = journal.reader("store")

        async def consume() -> None:
            while True:
                batch = await reader.read(settings.batch_size, 0.05)
                if not batch.records:
                    continue
                readings = [m for m in map(records.decode, batch.records) if isinstance(m, Reading)]
                assert await sink.write(readings) == []
                reader.commit(batch.end_offset)

        consumer = asyncio.create_task(consume())
        try:
            for i in range(0, 300, 50):
                await journal.append([records.encode(r) for r in _readings(50, i)])
            await _until(lambda: journal.lags()["store"] == 0)
            await asyncio.to_thread(own_influxdb.stop)
            for i in range(300, 1500, 100):
                await journal.append([records.encode(r) for r in _readings(100, i)])
            await _until(lambda: not sink.healthy)
            assert journal.lags()["store"] > 0  # the readings wait in the journal
            await asyncio.to_thread(own_influxdb.start)
            await _until(lambda: journal.lags()["store"] == 0, within_s=30)
            assert sink.healthy
            await _until(lambda: journal.oldest_offset > 0)  # consumed segments removed
        finally:
            consumer.cancel()
            await store.close()
    assert own_influxdb.count(db, "flood_gauge") == 1500


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["inline", "process"])
def test_hub_started_while_influxdb_is_down_is_not_writable_until_it_answers(
    writer: str, mosquitto: Mosquitto, own_influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """A hub started while InfluxDB is down says its store is not writable from its first
    health answer (ready all the same: readings wait in the journal); once InfluxDB is
    back it is writable, and the outage's error is no longer shown as current."""
    db, prefix = names.database(), names.topic_prefix()
    own_influxdb.stop()
    hub = HubProcess(
        tmp_path / "hub",
        env_for(
            prefix,
            mosquitto.url,
            HUB_STORE__BACKEND="influxdb",
            HUB_STORE__WRITER=writer,
            HUB_INFLUX__URL=own_influxdb.url,
            HUB_INFLUX__DATABASE=db,
            HUB_INFLUX__TIMEOUT_S="1",
        ),
    )
    pub = Publisher(mosquitto.url)
    try:
        hub.start()
        health = hub.health()
        assert health["ready"] is True
        assert health["ok"] is False
        assert health["checks"]["store"]["writable"] is False
        assert health["checks"]["store"]["state"] in ("opening", "unavailable")
        wait_for(
            lambda: hub.health()["checks"]["store"]["last_error"], timeout=30, what="the error"
        )
        store = hub.health()["checks"]["store"]
        assert (store["writable"], store["state"]) == (False, "unavailable")
        ts = int(time.time() * 1000)
        pub.publish(
            f"{prefix}/d01/flood_gauge/{names.device()}/telemetry",
            {"ts": ts, "seq": 0, "metrics": {"water_level_m": 1.0}},
        )
        pub.wait_all()

        own_influxdb.start()
        wait_for(lambda: hub.health()["checks"]["store"]["writable"], timeout=60, what="writable")
        store = hub.health()["checks"]["store"]
        assert (store["state"], store["last_error"]) == ("writable", None)
        assert store["since_ms"] >= ts
        wait_for(lambda: own_influxdb.count(db, "flood_gauge") == 1, timeout=30, what="stored")
        assert hub.health()["ok"] is True
    finally:
        pub.close()
        assert hub.stop() == 0, hub.log_tail()


async def _until(condition: Callable[[], bool], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
