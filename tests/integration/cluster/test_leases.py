"""Leases in NATS KV against a real nats-server: acquire, renew, lose, take over; and the
pools that keep each worker's fair share of partitions or slots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.client import Client

from hub.clock import FakeClock, SystemClock
from hub.cluster.leases import Lease, LeaseLost, Leases
from hub.cluster.pool import LeasePool, Membership, fair_share
from tests.conftest import Names
from tests.services import NatsServer

pytestmark = pytest.mark.integration

TTL = 1.0


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A NATS connection to the session's server."""
    nc = await nats.connect([nats_server.url])
    yield nc
    await nc.close()


def _leases(client: Client, names: Names, worker: str, **kw: object) -> Leases:
    options: dict[str, object] = {"ttl_s": TTL, "replicas": 1, "clock": SystemClock()}
    options |= kw
    return Leases(client, worker_id=worker, bucket=names.stream(), **options)  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool], within_s: float, what: str) -> float:
    """Seconds until ``condition`` holds (polling the loop), failing after ``within_s``."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within_s, f"{what} not within {within_s}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - began


def test_fair_share() -> None:
    """Each worker's share is the items over the workers, rounded up."""
    assert [fair_share(16, n) for n in (0, 1, 2, 3, 5, 16, 20)] == [16, 16, 8, 6, 4, 1, 1]


async def test_one_holder_at_a_time_and_release_frees_at_once(client: Client, names: Names) -> None:
    """A held lease cannot be acquired; renewed it stays; released, another takes it."""
    a, b = _leases(client, names, "a"), _leases(client, names, "b")
    await a.open()
    await b.open()
    lease = await a.acquire("partition.0")
    assert lease is not None
    assert lease.generation == lease.revision
    assert await b.acquire("partition.0") is None
    renewed = await a.renew(lease)
    assert renewed.revision > lease.revision
    assert renewed.generation == lease.generation
    assert (await a.holders())["partition.0"].worker == "a"
    await a.release(renewed)
    taken = await b.acquire("partition.0")
    assert taken is not None
    assert taken.generation > lease.generation
    with pytest.raises(LeaseLost):
        await a.renew(renewed)


async def test_an_unrenewed_lease_expires_and_another_takes_it(
    client: Client, names: Names
) -> None:
    """A dead holder's lease is gone one TTL after its last renewal; its renewal then fails."""
    a, b = _leases(client, names, "a"), _leases(client, names, "b")
    await a.open()
    await b.open()
    lease = await a.acquire("slot.1", {"x": 1})
    assert lease is not None
    began = time.monotonic()
    taken: list[Lease] = []

    async def try_take() -> None:
        while not taken:
            got = await b.acquire("slot.1")
            if got is not None:
                taken.append(got)
            else:
                await asyncio.sleep(0.05)

    await asyncio.wait_for(try_take(), 10)
    waited = time.monotonic() - began
    assert TTL * 0.9 <= waited < 2 * TTL
    with pytest.raises(LeaseLost):
        await a.renew(lease)
    assert (await b.holders())["slot.1"].worker == "b"


async def test_holder_stops_before_the_ttl_on_its_own_clock(client: Client, names: Names) -> None:
    """The holder's lease is valid until TTL less a margin after it asked; past that it
    counts as lost without asking the server."""
    clock = FakeClock()
    a = _leases(client, names, "a", clock=clock, ttl_s=10.0)
    await a.open()
    lease = await a.acquire("partition.3")
    assert lease is not None
    assert a.valid(lease)
    clock.advance(10.0 - a.margin_s - 0.01)
    assert a.valid(lease)
    clock.advance(0.02)
    assert not a.valid(lease)
    with pytest.raises(LeaseLost, match="not renewed in time"):
        await a.renew(lease)


async def test_the_buckets_ttl_wins_over_the_setting(client: Client, names: Names) -> None:
    """The TTL is fixed when the bucket is made; a worker set otherwise uses the bucket's."""
    first = _leases(client, names, "a", ttl_s=TTL)
    await first.open()
    second = _leases(client, names, "b", ttl_s=30.0)
    await second.open()
    assert second.ttl_s == pytest.approx(TTL)


class Worker:
    """One worker's membership and pool, with what its callbacks heard."""

    def __init__(self, client: Client, names: Names, worker: str, items: list[str]) -> None:
        self.leases = _leases(client, names, worker)
        self.membership = Membership(self.leases, ["live"])
        self.events: list[tuple[str, str]] = []
        self.pool = LeasePool(
            self.membership,
            items,
            role="live",
            on_acquired=self._hear("acquired"),
            on_lost=self._hear("lost"),
            on_release=self._hear("released"),
        )
        self.tasks: list[asyncio.Task[None]] = []

    def _hear(self, what: str) -> Callable[[Lease], asyncio.Future[None]]:
        async def heard(lease: Lease) -> None:
            self.events.append((what, lease.name))

        return heard  # type: ignore[return-value]

    async def start(self) -> None:
        await self.leases.open()
        self.tasks = [
            asyncio.create_task(self.membership.run()),
            asyncio.create_task(self.pool.run()),
        ]

    async def die(self) -> None:
        """Stop renewing anything, without a word (as SIGKILL would)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def stop(self) -> None:
        """A clean stop: hand over, leave."""
        await self.die()
        await self.pool.release_all()
        await self.membership.leave()


async def test_pools_share_the_items_and_take_over_a_dead_workers(
    client: Client, names: Names
) -> None:
    """Two workers hold two of four partitions each; one dies and the other holds all four
    within the lease TTL and a period; it comes back and gets its share handed over."""
    items = [f"partition.{n}" for n in range(4)]
    a, b = Worker(client, names, "a", items), Worker(client, names, "b", items)
    await a.start()
    await b.start()
    try:
        await _until(lambda: len(a.pool.held) == 2 and len(b.pool.held) == 2, 10, "two each")
        assert set(a.pool.held) | set(b.pool.held) == set(items)
        dead = set(b.pool.held)
        await b.die()
        took = await _until(lambda: len(a.pool.held) == 4, 10, "the takeover")
        assert took < 2 * TTL
        assert {("acquired", n) for n in dead} <= set(a.events)
        assert not [e for e in a.events if e[0] == "lost"]
        # Another worker joins.
        before = len(a.events)
        c = Worker(client, names, "c", items)
        await c.start()
        try:
            await _until(lambda: len(a.pool.held) == 2 and len(c.pool.held) == 2, 10, "rebalanced")
            handed = [n for what, n in a.events[before:] if what == "released"]
            assert len(handed) == 2
            assert set(handed) == set(c.pool.held)
        finally:
            await c.stop()
    finally:
        await a.stop()
        await b.die()


async def test_a_lease_taken_from_a_worker_stops_its_work(client: Client, names: Names) -> None:
    """A worker whose lease was taken (it could not renew in time) hears ``on_lost``."""
    items = ["slot.0"]
    a = Worker(client, names, "a", items)
    await a.start()
    try:
        await _until(lambda: len(a.pool.held) == 1, 10, "the slot")
        lease = a.pool.held["slot.0"]
        # Someone else holds it now (as after a long stall of a's).
        await a.leases.kv.delete("slot.0")
        other = _leases(client, names, "z")
        await other.open()
        assert await other.acquire("slot.0") is not None
        await _until(lambda: ("lost", "slot.0") in a.events, 10, "the loss")
        assert "slot.0" not in a.pool.held or a.pool.held["slot.0"] is not lease
    finally:
        await a.stop()
