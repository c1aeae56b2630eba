"""The store writer process (hub.store.writer): a real child process, a real store.

What the hub relies on: every batch it sends is reported landed, in order, with
the store's refusals; the figures reach the hub's metrics; an outage shows in
health; a child that dies is noticed; and a child never outlives its hub.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from hub import metrics, records
from hub.messages import Reading, Rejection, StatusUpdate
from hub.settings import Settings
from hub.store.embedded import TELEMETRY_DB, EmbeddedStore
from hub.store.writer import StoreWriter, StoreWriterDied
from tests.services import free_port

pytestmark = pytest.mark.integration

BASE = 1_764_000_000_000


def _reading(i: int, **values: float) -> Reading:
    return Reading("d01", "flood_gauge", "fg-1", BASE + i, values or {"water_level_m": i}, seq=i)


class Landed:
    """What the writer reported landed: end offsets in order, and the refusals."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.rejections: list[Rejection] = []

    def __call__(self, end_offset: int, rejections: list[Rejection]) -> None:
        self.offsets.append(end_offset)
        self.rejections.extend(rejections)


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _stored(data_dir: Path) -> list[Reading]:
    store = EmbeddedStore(data_dir / TELEMETRY_DB)
    await store.open()
    try:
        return [r async for r in store.history(0, BASE * 2)]
    finally:
        await store.close()


async def test_batches_land_in_order_with_refusals_and_metrics(tmp_path: Path) -> None:
    """Readings land in the embedded store; each batch is reported once, in order; a
    refused reading comes back as a store_refused dead letter; the figures are the hub's."""
    landed = Landed()
    written_before = metrics.STORE_POINTS_WRITTEN._value.get()
    refused_before = metrics.STORE_WRITE_ERRORS.labels(kind="refused")._value.get()
    status = StatusUpdate("d01", "flood_gauge", "fg-1", "online", BASE)
    async with StoreWriter(Settings(data_dir=tmp_path), on_done=landed) as writer:
        await writer.write([records.encode(_reading(i)) for i in range(100)], 1000)
        await writer.write([records.encode(status), b"not a record"], 1100)
        # "seq" is a reserved field name: the store refuses such readings for good.
        # Many of them: their dead letters come back in one reply line of ~170 KiB.
        refused = [records.encode(_reading(100 + i * 1000, seq=1.0)) for i in range(500)]
        await writer.write(refused, 1200)
        await writer.write([records.encode(_reading(i)) for i in range(101, 150)], 1900)
        await _until(lambda: len(landed.offsets) == 4)
        assert writer.ready.is_set()
        assert writer.healthy
    assert landed.offsets == [1000, 1100, 1200, 1900]
    assert [r.reason for r in landed.rejections] == ["store_refused"] * 500
    assert "seq" in landed.rejections[0].detail
    stored = await _stored(tmp_path)
    assert sorted(r.seq for r in stored if r.seq is not None) == [*range(100), *range(101, 150)]
    assert len(stored) == 149
    assert metrics.STORE_POINTS_WRITTEN._value.get() - written_before == 149
    assert metrics.STORE_WRITE_ERRORS.labels(kind="refused")._value.get() - refused_before == 500


async def test_a_clean_stop_lands_everything_sent(tmp_path: Path) -> None:
    """Leaving the writer right after sending: what was sent lands and is reported
    before the child exits (nothing is left to replay)."""
    landed = Landed()
    async with StoreWriter(Settings(data_dir=tmp_path), on_done=landed) as writer:
        for batch in range(20):
            blobs = [records.encode(_reading(batch * 50 + i)) for i in range(50)]
            await writer.write(blobs, (batch + 1) * 100)
    assert landed.offsets == [(b + 1) * 100 for b in range(20)]
    assert len(await _stored(tmp_path)) == 1000


async def test_a_killed_child_is_noticed(tmp_path: Path) -> None:
    """SIGKILL of the child ends feed() with StoreWriterDied and its exit code."""
    sent = asyncio.Event()

    async def batches() -> AsyncIterator[tuple[list[bytes], int]]:
        yield [records.encode(_reading(1))], 10
        sent.set()
        await asyncio.Event().wait()  # nothing more for now
        yield [], 0  # pragma: no cover

    landed = Landed()
    async with StoreWriter(Settings(data_dir=tmp_path), on_done=landed) as writer:
        feeding = asyncio.create_task(writer.feed(batches()))
        await _until(lambda: landed.offsets == [10])
        assert writer._proc is not None
        os.kill(writer._proc.pid, signal.SIGKILL)
        with pytest.raises(StoreWriterDied) as died:
            await asyncio.wait_for(feeding, 20)
    assert died.value.returncode == -signal.SIGKILL


def _unreachable_influx(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        store={"backend": "influxdb"},
        influx={"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1},
    )


async def test_an_unreachable_store_shows_in_health_and_stops_at_once(tmp_path: Path) -> None:
    """An InfluxDB that does not answer: the writer reports unhealthy with the error,
    and a stop does not wait for a store that cannot take anything."""
    landed = Landed()
    writer = StoreWriter(_unreachable_influx(tmp_path), on_done=landed)
    await writer.__aenter__()
    try:
        await writer.write([records.encode(_reading(1))], 10)
        await _until(lambda: writer.health.state == "unavailable")
        assert "does not answer" in (writer.last_error or "")
        assert not writer.healthy
    finally:
        began = time.monotonic()
        await writer.__aexit__(None, None, None)
    assert time.monotonic() - began < 5
    assert landed.offsets == []


async def test_a_child_that_cannot_write_holds_the_hub_back(tmp_path: Path) -> None:
    """Back-pressure: while the child cannot write (its store is down), write() stops
    returning after a few MiB, so the readings wait in the journal, not in memory."""
    writer = StoreWriter(_unreachable_influx(tmp_path), on_done=Landed())
    blob = records.encode(_reading(1, water_level_m=1.0))
    batch = [blob] * (1024 * 1024 // len(blob))  # about 1 MiB a frame
    taken: list[int] = []

    async def send_64_mib() -> None:
        for n in range(1, 65):
            await writer.write(batch, n)
            taken.append(n)

    await writer.__aenter__()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(send_64_mib(), 3)
    finally:
        await writer.__aexit__(None, None, None)
    assert len(taken) < 16, f"{len(taken)} MiB taken while nothing could be written"


PARENT = """
import asyncio, sys
from pathlib import Path
from hub.settings import Settings
from hub.store.writer import StoreWriter

async def main() -> None:
    settings = Settings(
        data_dir=Path(sys.argv[1]), store={"backend": "influxdb"}, influx={"url": sys.argv[2]}
    )
    async with StoreWriter(settings, on_done=lambda o, r: None) as w:
        while w.last_error is None:
            await asyncio.sleep(0.02)
        assert w._proc is not None
        print("writer pid", w._proc.pid, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_the_child_does_not_outlive_its_hub(tmp_path: Path) -> None:
    """A hub killed with SIGKILL cannot stop its writer, busy retrying a store that is
    down (so not reading its closed input): the writer notices and exits."""
    url = f"http://127.0.0.1:{free_port()}"
    hub = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert hub.stdout is not None
        line = ""
        while not line.startswith("writer pid"):  # the script's logs go to stdout too
            line = hub.stdout.readline()
            assert line, "the script ended without starting a writer"
        child = psutil.Process(int(line.split()[-1]))
        hub.kill()
        hub.wait(10)
        deadline = time.monotonic() + 10
        while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the store writer outlived its hub"
            time.sleep(0.05)
    finally:
        hub.kill()
