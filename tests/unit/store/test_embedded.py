"""Embedded store specifics: durable field types, file location, closed-store errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hub.clock import FakeClock
from hub.messages import Reading
from hub.settings import Settings
from hub.store.base import StoreUnavailable
from hub.store.embedded import EmbeddedStore
from hub.store.factory import make_store
from hub.store.influx import InfluxStore


async def test_field_types_survive_reopen(tmp_path: Path) -> None:
    """A metric stored as a number stays numeric after a restart: a bool is then refused."""
    store = EmbeddedStore(tmp_path / "telemetry.db")
    await store.open()
    await store.write([Reading("d01", "bridge", "b-1", 1, {"strain_ue": 1.0})])
    await store.close()
    again = EmbeddedStore(tmp_path / "telemetry.db")
    await again.open()
    try:
        result = await again.write([Reading("d01", "bridge", "b-2", 2, {"strain_ue": True})])
    finally:
        await again.close()
    assert result.written == 0
    assert "conflict" in result.refused[0][1]


async def test_conflicts_inside_one_batch_keep_the_first_type(tmp_path: Path) -> None:
    """Within one batch the first reading fixes a new metric's type, as InfluxDB does."""
    store = EmbeddedStore(tmp_path / "telemetry.db")
    await store.open()
    try:
        first = Reading("d01", "streetlight", "s-1", 1, {"lamp_on": True})
        second = Reading("d01", "streetlight", "s-1", 2, {"lamp_on": 1.0})
        result = await store.write([first, second])
    finally:
        await store.close()
    assert [r for r, _ in result.refused] == [second]


async def test_writes_do_not_block_the_event_loop(tmp_path: Path) -> None:
    """While a large batch is written, other tasks keep running (the work is in a thread)."""
    store = EmbeddedStore(tmp_path / "telemetry.db")
    await store.open()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    readings = [
        Reading("d01", "air_quality", f"aq-{i % 500}", i, {"pm2_5_ug_m3": float(i)})
        for i in range(20_000)
    ]
    task = asyncio.create_task(ticker())
    try:
        await store.write(readings)
    finally:
        task.cancel()
        await store.close()
    assert ticks > 10


async def test_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    """A path SQLite cannot open (here a directory) raises StoreUnavailable, not a crash."""
    store = EmbeddedStore(tmp_path)
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.write([Reading("d01", "bridge", "b-1", 1, {"strain_ue": 1.0})])


def test_factory_picks_the_configured_backend(tmp_path: Path) -> None:
    """embedded -> HUB_DATA_DIR/telemetry.db; influxdb -> the InfluxDB store."""
    embedded = make_store(Settings(data_dir=tmp_path), FakeClock())
    assert isinstance(embedded, EmbeddedStore)
    assert embedded.path == tmp_path / "telemetry.db"
    influx = make_store(
        Settings(data_dir=tmp_path, store={"backend": "influxdb"}, influx={"url": "http://x:1"}),
        FakeClock(),
    )
    assert isinstance(influx, InfluxStore)
