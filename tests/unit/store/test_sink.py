"""The store sink: batching, retry on outage, refusals returned, health flags, metrics.

The store here is a scripted stand-in: the sink's logic is under test, and the
real stores have their own contract suite (tests/integration/test_store_contract.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from hub import metrics
from hub.clock import FakeClock
from hub.messages import Reading
from hub.settings import InfluxSettings
from hub.store.base import Point, StoreUnavailable, TelemetryQuery, WriteResult
from hub.store.sink import StoreSink


class ScriptedStore:
    """Fails the next ``outages`` writes, refuses readings whose metric 'bad' is set."""

    name = "scripted"

    def __init__(self, outages: int = 0) -> None:
        self.outages = outages
        self.batches: list[int] = []
        self.written: list[Reading] = []
        self.explode_on: str | None = None

    async def open(self) -> None:
        return

    async def close(self) -> None:
        return

    async def ping(self) -> bool:
        return self.outages == 0

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        if self.outages:
            self.outages -= 1
            raise StoreUnavailable("connection refused")
        if self.explode_on and any(r.device_id == self.explode_on for r in readings):
            raise RuntimeError("driver bug")
        self.batches.append(len(readings))
        refused = [(r, "bad point") for r in readings if "bad" in r.metrics]
        good = [r for r in readings if "bad" not in r.metrics]
        self.written.extend(good)
        return WriteResult(len(good), refused)

    async def query(self, query: TelemetryQuery) -> list[Point]:
        return []

    async def history(
        self, start_ms: int, end_ms: int, asset_types: Sequence[str] | None = None
    ) -> AsyncIterator[Reading]:
        for reading in self.written:
            yield reading


def _readings(n: int) -> list[Reading]:
    return [Reading("d01", "bridge", f"b-{i}", i, {"strain_ue": float(i)}) for i in range(n)]


def _sink(store: ScriptedStore, batch_size: int = 100) -> StoreSink:
    return StoreSink(
        store,
        InfluxSettings(batch_size=batch_size),
        clock=FakeClock(),
        retry_min_s=0.001,
        retry_max_s=0.01,
    )


async def test_readings_are_written_in_batches_of_batch_size() -> None:
    """250 readings with batch_size 100 are three writes of 100, 100 and 50."""
    store = ScriptedStore()
    written_before = metrics.STORE_POINTS_WRITTEN._value.get()
    assert await _sink(store).write(_readings(250)) == []
    assert store.batches == [100, 100, 50]
    assert metrics.STORE_POINTS_WRITTEN._value.get() - written_before == 250


async def test_outage_is_retried_until_the_store_is_back() -> None:
    """StoreUnavailable is retried (healthy false meanwhile), then everything is written."""
    store = ScriptedStore(outages=5)
    sink = _sink(store)
    errors_before = metrics.STORE_WRITE_ERRORS.labels(kind="unavailable")._value.get()
    assert await sink.write(_readings(10)) == []
    assert len(store.written) == 10
    assert sink.healthy
    assert sink.last_error is None  # the outage is over: its error is not current
    assert metrics.STORE_WRITE_ERRORS.labels(kind="unavailable")._value.get() - errors_before == 5


async def test_sink_reports_unhealthy_while_retrying_and_can_be_cancelled() -> None:
    """During a long outage healthy is False; cancelling the write stops the retries."""
    store = ScriptedStore(outages=10**9)
    sink = _sink(store)
    task = asyncio.create_task(sink.write(_readings(3)))
    deadline = time.monotonic() + 5
    assert not sink.healthy  # nothing has answered yet
    while sink.health.state != "unavailable":
        assert time.monotonic() < deadline, "the sink never reported the outage"
        await asyncio.sleep(0.001)
    assert sink.last_error == "connection refused"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.written == []


async def test_refused_readings_are_returned_with_reasons() -> None:
    """What the store refuses comes back (for dead letters); the rest is written."""
    store = ScriptedStore()
    readings = _readings(5)
    bad = Reading("d01", "bridge", "b-x", 99, {"bad": 1.0})
    refused = await _sink(store).write([*readings[:2], bad, *readings[2:]])
    assert refused == [(bad, "bad point")]
    assert store.written == readings


async def test_unexpected_store_error_is_isolated_to_its_reading() -> None:
    """A store bug on one reading refuses that reading only; the sink carries on."""
    store = ScriptedStore()
    store.explode_on = "b-3"
    readings = _readings(8)
    refused = await _sink(store).write(readings)
    assert [r for r, _ in refused] == [readings[3]]
    assert "driver bug" in refused[0][1]
    assert store.written == readings[:3] + readings[4:]


async def test_health_is_opening_until_the_store_answers_and_the_observer_hears_the_error() -> None:
    """A new sink is not writable ("opening"); open() makes it writable; an outage is
    reported to the observer with its error already in health (the store writer
    process sends that error to the hub); the answer after it clears the error."""
    store = ScriptedStore(outages=2)
    heard: list[str | None] = []
    sink = _sink(store)

    class Observer:
        def written(self, batch_size: int, seconds: float, points: int) -> None:
            return None

        def failed(self, kind: str, count: int) -> None:
            heard.append(sink.last_error)

    sink.observer = Observer()  # type: ignore[assignment]
    assert (sink.health.state, sink.healthy) == ("opening", False)
    await sink.open()
    assert sink.health.report() == {
        "writable": True,
        "state": "writable",
        "since_ms": sink.clock.now_ms(),
        "last_error": None,
    }
    assert await sink.write(_readings(1)) == []
    assert heard == ["connection refused", "connection refused"]
    assert (sink.health.state, sink.last_error) == ("writable", None)
