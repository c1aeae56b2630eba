"""The outbox's delivery worker: a sliding window of sends, settled in bulk, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.alerts import manager as manager_module
from hub.messages import Notification, RuleEvent
from hub.ports import UNRESTRICTED, AlertFilter, DeliveryError
from tests.unit.alerts.conftest import Harness

Ev = Callable[..., RuleEvent]

ONE_RECEIVER = """
receivers: [{name: ops, mqtt: {}}]
route: {receivers: [ops], group_wait: 0s, repeat_interval: 1h}
"""


class Gated:
    """A receiver whose sends wait until the test releases them, one by one."""

    concurrency = 4

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()

    async def send(self, notification: Notification) -> None:
        source = str(notification.payload["alert"]["source"])  # type: ignore[index]
        self.started.append(source)
        gate = self.gates.setdefault(source, asyncio.Event())
        await gate.wait()
        if source in self.fail:
            raise DeliveryError("broker went away", retryable=True)

    async def close(self) -> None:
        return None

    def release(self, source: str) -> None:
        self.gates.setdefault(source, asyncio.Event()).set()


async def _until(condition: Callable[[], bool], limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110  (state changed by the worker task)
            await asyncio.sleep(0.001)


def _gated(harness_factory: Callable[..., Harness]) -> tuple[Harness, Gated]:
    harness = harness_factory(ONE_RECEIVER)
    gated = Gated()
    harness.receivers["ops"] = gated  # type: ignore[assignment]
    harness.new_manager()
    return harness, gated


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_window_slides_instead_of_waiting_for_a_whole_batch(
    harness_factory: Callable[..., Harness], ev: Ev
) -> None:
    """With 4 in flight, finishing one starts the 5th while the other 3 still wait."""
    harness, gated = _gated(harness_factory)
    await harness.manager.handle([ev(source=f"wm-{i}") for i in range(8)])
    worker = asyncio.create_task(harness.manager.run())
    try:
        await _until(lambda: len(gated.started) == 4)
        assert gated.started == ["wm-0", "wm-1", "wm-2", "wm-3"]
        gated.release("wm-0")
        await _until(lambda: len(gated.started) == 5)
        assert gated.started[4] == "wm-4"
        # wm-0 is logged within SETTLE_DELAY_S (results are committed in batches)
        await _until(lambda: harness.manager.pending_notifications() == {"ops": 7})
        for i in range(1, 8):
            gated.release(f"wm-{i}")
        await _until(lambda: harness.manager.pending_notifications() == {})
        assert gated.started == [f"wm-{i}" for i in range(8)]
    finally:
        await _stop(worker)


async def test_retryable_failure_stops_the_window_then_restarts_from_the_head(
    harness_factory: Callable[..., Harness], ev: Ev
) -> None:
    """After a failure nothing new goes out; the failed one is retried first, once."""
    harness, gated = _gated(harness_factory)
    gated.fail.add("wm-0")
    await harness.manager.handle([ev(source=f"wm-{i}") for i in range(6)])
    worker = asyncio.create_task(harness.manager.run())
    try:
        await _until(lambda: len(gated.started) == 4)
        gated.release("wm-0")  # fails: wm-4 and wm-5 must not start
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(gated.started) == 4
        for i in (1, 2, 3):
            gated.release(f"wm-{i}")
        gated.fail.clear()
        harness.clock.advance(2)  # past the first backoff (1 s +- 20 %)
        await _until(lambda: len(gated.started) >= 5)
        assert gated.started[4] == "wm-0"
        gated.release("wm-4")
        gated.release("wm-5")
        await _until(lambda: harness.manager.pending_notifications() == {})
    finally:
        await _stop(worker)
    assert sorted(gated.started) == sorted([*(f"wm-{i}" for i in range(6)), "wm-0"])
    (sent,) = (
        harness.conns[-1]
        .execute("SELECT COUNT(*) FROM notify_log WHERE outcome = 'sent'")
        .fetchone()
    )
    assert sent == 6


async def test_stop_logs_sends_that_finish_in_the_grace_and_restart_resends_nothing(
    harness_factory: Callable[..., Harness], ev: Ev
) -> None:
    """A send on the wire when the hub stops is logged if it completes; none is sent twice."""
    harness, gated = _gated(harness_factory)
    await harness.manager.handle([ev(source="wm-0"), ev(source="wm-1")])
    worker = asyncio.create_task(harness.manager.run())
    await _until(lambda: len(gated.started) == 2)
    worker.cancel()
    await asyncio.sleep(0)
    gated.release("wm-0")
    gated.release("wm-1")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker, 5)
    assert harness.manager.pending_notifications() == {}
    await harness.manager.close()
    harness.new_manager()  # the restart
    gated.started.clear()
    await harness.deliver()
    assert gated.started == []


async def test_running_manager_checkpoints_the_wal_itself(
    harness_factory: Callable[..., Harness], ev: Ev, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """While delivering, commits skip SQLite's checkpoint; a thread copies the WAL instead."""
    monkeypatch.setattr(manager_module, "CHECKPOINT_S", 0.01)
    harness = harness_factory(ONE_RECEIVER)
    conn = harness.conns[-1]
    worker = asyncio.create_task(harness.manager.run())
    try:
        await _until(lambda: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0)
        await harness.manager.handle([ev(source=f"wm-{i}") for i in range(20)])

        def in_main_file() -> int:
            # The database file alone, without its -wal: only checkpointed pages.
            copy = tmp_path / "copy.db"
            shutil.copyfile(harness.db, copy)
            with contextlib.closing(sqlite3.connect(copy)) as c:
                try:
                    return int(c.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])
                except sqlite3.DatabaseError:
                    # Not even the schema checkpointed yet, or the copy caught
                    # the checkpoint half-way through writing a page: look again.
                    return -1

        await _until(lambda: in_main_file() == 20)
    finally:
        await _stop(worker)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


async def test_tick_handles_a_burst_of_due_steps_in_chunks_and_yields_between(
    harness_factory: Callable[..., Harness], ev: Ev
) -> None:
    """120 alerts due at once after group_wait: all notified in one tick, in several chunks."""
    harness = harness_factory(
        "receivers: [{name: ops, mqtt: {}}]\n"
        "route: {receivers: [ops], group_wait: 30s, repeat_interval: 1h}\n"
    )
    await harness.manager.handle([ev(source=f"wm-{i}") for i in range(120)])
    assert harness.manager.pending_notifications() == {}
    harness.clock.advance(30)
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await harness.manager.tick()
    other.cancel()
    assert harness.manager.pending_notifications() == {"ops": 120}
    assert turns - before >= 120 // manager_module.TICK_CHUNK


class RoundTrip:
    """A receiver that takes a few turns of the loop per send, like a PUBACK does;
    it notes how many alerts were open when each send began."""

    concurrency = 128

    def __init__(self, opened: Callable[[], int]) -> None:
        self.opened = opened
        self.open_at_send: list[int] = []

    async def send(self, notification: Notification) -> None:
        self.open_at_send.append(self.opened())
        for _ in range(3):
            await asyncio.sleep(0)

    async def close(self) -> None:
        return None


async def test_a_storm_is_delivered_as_it_is_opened_not_after(
    harness_factory: Callable[..., Harness], ev: Ev
) -> None:
    """Delivery keeps within two chunks of the opening, with sends that take several
    turns of the loop: a storm bigger than the loop can take must not leave its
    first alerts waiting in the outbox while later ones are opened (they waited
    seconds in bench/alerts.py, 100 alerts behind after 3 chunks and growing)."""
    harness = harness_factory(ONE_RECEIVER)
    receiver = RoundTrip(lambda: len(harness.events))
    harness.receivers["ops"] = receiver  # type: ignore[assignment]
    harness.new_manager()
    chunk = manager_module.HANDLE_CHUNK
    worker = asyncio.create_task(harness.manager.run())
    try:
        await _until(lambda: bool(harness.manager._caught_up))  # the worker is up
        await harness.manager.handle([ev(source=f"wm-{i}") for i in range(10 * chunk)])
        await _until(lambda: len(receiver.open_at_send) == 10 * chunk)
    finally:
        await _stop(worker)
    ahead = [opened - i for i, opened in enumerate(receiver.open_at_send)]
    assert max(ahead) <= 2 * chunk, f"delivery fell {max(ahead)} alerts behind the opening"


async def test_a_failing_receiver_does_not_hold_back_opening(
    harness_factory: Callable[..., Harness], ev: Ev, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A halted worker (retryable failure, backing off) counts as caught up: the next
    chunks open without waiting for it (here, a wait would be 2 s per chunk)."""
    monkeypatch.setattr(manager_module, "CATCH_UP_S", 2.0)
    harness, gated = _gated(harness_factory)
    gated.fail.add("wm-0")
    worker = asyncio.create_task(harness.manager.run())
    try:
        await _until(lambda: bool(harness.manager._caught_up))
        await harness.manager.handle([ev(source="wm-0")])
        await _until(lambda: gated.started == ["wm-0"])
        gated.release("wm-0")  # fails: the worker halts and backs off
        await _until(harness.manager._caught_up["ops"].is_set)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await harness.manager.handle([ev(source=f"wm-{i}") for i in range(1, 4 * 50)])
        assert loop.time() - began < 2.0
    finally:
        await _stop(worker)
    assert len(harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)) == 200
