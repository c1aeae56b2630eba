"""The journal on JetStream against real nats-server: appends acknowledged by the stream,
partitions by district, the shared store consumer, partition takeover, retention, a full
stream, and a three-node cluster losing a node mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import nats
import pytest

from hub.clock import SystemClock
from hub.journal.jetstream import (
    STORE_CONSUMER,
    JetStreamJournal,
    JetStreamReader,
    partition_of,
)
from hub.settings import JournalSettings, NatsSettings
from tests.conftest import Names
from tests.services import NatsCluster, NatsServer

pytestmark = pytest.mark.integration

DISTRICTS = [f"d{n:02d}" for n in range(12)]


def _settings(urls: str, names: Names, **kw: object) -> NatsSettings:
    stream = names.stream()
    base: dict[str, object] = {
        "url": urls,
        "stream": stream,
        "subject_prefix": stream,
        "replicas": 1,
        "partitions": 4,
        "publish_timeout_s": 2.0,
        "max_bytes": 64 * 1024 * 1024,
    }
    return NatsSettings(**(base | kw))


def _journal(settings: NatsSettings, worker: str = "w1") -> JetStreamJournal:
    return JetStreamJournal(
        settings, JournalSettings(commit_interval_ms=2), clock=SystemClock(), worker_id=worker
    )


def _record(district: str, n: int) -> bytes:
    return f"{district}:{n:06d}".encode()


async def _drain(reader: JetStreamReader, expect: int, within_s: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + within_s
    while len(got) < expect:
        assert time.monotonic() < deadline, f"only {len(got)} of {expect} records"
        batch = await reader.read(1000, 0.5)
        got.extend(batch.records)
        if batch.records:
            reader.commit(batch.end_offset)
    return got


@pytest.fixture
async def journal(nats_server: NatsServer, names: Names) -> AsyncIterator[JetStreamJournal]:
    """An open journal on its own stream of the session's server."""
    async with _journal(_settings(nats_server.url, names)) as j:
        yield j


async def test_append_returns_after_the_stream_has_every_record(
    journal: JetStreamJournal, nats_server: NatsServer
) -> None:
    """An append returns once the stream acknowledged it: the records are there, once."""
    records = [_record(d, n) for n in range(50) for d in DISTRICTS]
    districts = [r.split(b":")[0].decode() for r in records]
    end = await journal.append(records[:300], districts[:300])
    end = await journal.append(records[300:], districts[300:])
    assert end == journal.head_offset
    got = await _drain(journal.reader(STORE_CONSUMER), len(records))
    assert Counter(got) == Counter(records)


async def test_records_go_to_their_districts_partition_in_order(
    journal: JetStreamJournal,
) -> None:
    """A partition's live reader sees exactly its districts' records, in append order."""
    records = [_record(d, n) for n in range(30) for d in DISTRICTS]
    districts = [r.split(b":")[0].decode() for r in records]
    await asyncio.gather(
        *(journal.append(records[i : i + 40], districts[i : i + 40]) for i in range(0, 360, 40))
    )
    for p in range(journal.partitions):
        mine = [r for r, d in zip(records, districts, strict=True) if journal.partition_of(d) == p]
        reader = await journal.partition_reader(p, generation=1)
        got = await _drain(reader, len(mine))
        assert sorted(got) == sorted(mine)
        for d in {d for d in districts if journal.partition_of(d) == p}:
            # Per district, the order of the appends (which ran concurrently, so only
            # each append's own order is known: a district's records are numbered).
            seqs = [int(r.split(b":")[1]) for r in got if r.startswith(d.encode())]
            assert seqs == sorted(seqs)


async def test_append_refuses_records_without_districts(journal: JetStreamJournal) -> None:
    """A record without its district cannot be routed: a clear error, nothing published."""
    with pytest.raises(ValueError, match="routes by district"):
        await journal.append([b"x", b"y"], ["d01"])
    with pytest.raises(ValueError, match="exceeds"):
        await journal.append([b"x" * (2 * 1024 * 1024)], ["d01"])


async def test_a_new_owner_resumes_at_the_acknowledged_position_at_once(
    journal: JetStreamJournal,
) -> None:
    """Takeover: the next generation starts just past what the old one acknowledged,
    without waiting for the old consumer's ack wait, and the old consumer is gone."""
    district = DISTRICTS[0]
    p = journal.partition_of(district)
    records = [_record(district, n) for n in range(100)]
    for n in range(0, 100, 10):  # ten messages
        await journal.append(records[n : n + 10], [district] * 10)
    old = await journal.partition_reader(p, generation=1)
    first = await old.read(10, 2.0)
    assert first.records
    old.commit(first.end_offset)  # acknowledged: the new owner must not see these
    more = await old.read(1000, 2.0)  # delivered, never acknowledged: the old owner dies
    assert more.records
    await old.flush_acks()
    # The old owner is gone without a word (its reader is simply abandoned).
    started = time.monotonic()
    new = await journal.partition_reader(p, generation=2)
    got = await _drain(new, len(records) - len(first.records), within_s=5)
    assert time.monotonic() - started < 5  # not the 300 s ack wait
    assert got == records[len(first.records) :]
    names = [ci.name for ci in await journal.js.consumers_info(journal.settings.stream)]
    assert f"live-p{p}-g2" in names
    assert f"live-p{p}-g1" not in names


async def test_records_in_the_restored_snapshot_are_skipped(journal: JetStreamJournal) -> None:
    """A new owner that restored a snapshot taken at position S reads only from S on,
    even when the old owner's acknowledgement of them never arrived."""
    district = DISTRICTS[1]
    p = journal.partition_of(district)
    records = [_record(district, n) for n in range(40)]
    for n in range(0, 25, 5):
        await journal.append(records[n : n + 5], [district] * 5)
    old = await journal.partition_reader(p, generation=1)
    batch = await old.read(1000, 2.0)
    snapshot_at = batch.end_offset  # state saved here; the owner died before acking
    await journal.append(records[25:], [district] * 15)
    new = await journal.partition_reader(p, generation=2, resume_from=snapshot_at)
    assert await _drain(new, 15) == records[25:]


async def test_a_lost_delivery_restarts_the_partition_consumer_in_order(
    journal: JetStreamJournal,
) -> None:
    """Deliveries lost on the way (a connection to a dying node) are noticed by the gap in
    consumer sequences: the consumer restarts at its acknowledged position and the reader
    gets the lost records at once, in order, not after the ack wait behind newer ones."""
    district = DISTRICTS[3]
    p = journal.partition_of(district)
    records = [_record(district, n) for n in range(30)]
    for n in range(0, 30, 3):  # ten messages
        await journal.append(records[n : n + 3], [district] * 3)
    reader = await journal.partition_reader(p, generation=1)
    # Two deliveries go astray: taken from the consumer by a subscription that vanishes.
    thief = await journal.js.pull_subscribe_bind(reader.consumer, stream=journal.settings.stream)
    stolen = await thief.fetch(2, timeout=2.0)
    assert len(stolen) == 2
    await thief.unsubscribe()
    started = time.monotonic()
    assert await _drain(reader, 30, within_s=10) == records
    assert time.monotonic() - started < 10  # not the 300 s ack wait


async def test_store_consumer_is_shared_and_redelivers_a_dead_readers_messages(
    nats_server: NatsServer, names: Names
) -> None:
    """Two workers pull from the one store consumer; every record is written by one of
    them, and what a worker held unacknowledged when it went goes to the other after
    the ack wait."""
    settings = _settings(nats_server.url, names)
    j1, j2 = (
        JetStreamJournal(
            settings,
            JournalSettings(commit_interval_ms=2),
            clock=SystemClock(),
            worker_id=worker,
            store_ack_wait_s=2.0,
        )
        for worker in ("w1", "w2")
    )
    async with j1, j2:
        records = [_record(d, n) for n in range(20) for d in DISTRICTS]
        for n in range(0, len(records), 12):  # twenty appends, several messages each
            batch = records[n : n + 12]
            await j1.append(batch, [r.split(b":")[0].decode() for r in batch])
        r1 = j1.reader(STORE_CONSUMER)
        done1 = await r1.read(10, 2.0)  # written and acknowledged by worker 1
        r1.commit(done1.end_offset)
        held = await r1.read(10, 2.0)  # delivered to worker 1, which then stops
        assert done1.records
        assert held.records
        await r1.aclose()
        r2 = j2.reader(STORE_CONSUMER)
        got2 = await _drain(r2, len(records) - len(done1.records), within_s=15)
        assert not set(done1.records) & set(got2)
        assert set(held.records) <= set(got2)
        assert Counter(done1.records + got2) == Counter(records)


async def test_stream_partition_count_is_fixed_when_made(
    nats_server: NatsServer, names: Names
) -> None:
    """A worker configured with another partition count routes as the stream says."""
    async with _journal(_settings(nats_server.url, names, partitions=4)) as j1:
        assert j1.partitions == 4
    async with _journal(_settings(nats_server.url, names, partitions=9)) as j2:
        assert j2.partitions == 4
        assert j2.partition_of("d07") == partition_of("d07", 4)


async def test_a_full_stream_holds_appends_until_consumers_catch_up(
    nats_server: NatsServer, names: Names
) -> None:
    """Over HUB_NATS__MAX_BYTES an append waits (is_full), never drops; once every
    consumer has acknowledged, retention frees the room and the append completes."""
    settings = _settings(nats_server.url, names, partitions=1, max_bytes=1024 * 1024)
    async with _journal(settings) as journal:
        live = await journal.partition_reader(0, generation=1)
        store = journal.reader(STORE_CONSUMER)
        chunk = [b"x" * 1000] * 200
        await journal.append(chunk, ["d"] * 200)
        await journal.append(chunk, ["d"] * 200)
        await journal.append(chunk, ["d"] * 200)
        await journal.append(chunk, ["d"] * 200)
        await journal.append(chunk, ["d"] * 200)
        blocked = asyncio.create_task(journal.append(chunk, ["d"] * 200))
        deadline = time.monotonic() + 10
        while not journal.is_full:
            assert time.monotonic() < deadline, "the append did not wait"
            await asyncio.sleep(0.05)
        assert not blocked.done()
        # Only the store has caught up: nothing can go yet.
        await _drain(store, 1000)
        await store.flush_acks()
        assert await journal.reclaim() == 0 or not blocked.done()
        await _drain(live, 1000)
        await live.flush_acks()
        await asyncio.wait_for(blocked, 15)
        assert not journal.is_full


async def test_reclaim_waits_for_every_partition(nats_server: NatsServer, names: Names) -> None:
    """Nothing is purged while a partition has no consumer yet; then only what every
    consumer acknowledged."""
    settings = _settings(nats_server.url, names, partitions=2)
    async with _journal(settings) as journal:
        by_p: dict[int, str] = {}
        for d in DISTRICTS:
            by_p.setdefault(journal.partition_of(d), d)
        d0, d1 = by_p[0], by_p[1]
        await journal.append([_record(d0, n) for n in range(10)], [d0] * 10)
        await journal.append([_record(d1, n) for n in range(10)], [d1] * 10)
        store = journal.reader(STORE_CONSUMER)
        await _drain(store, 20)
        await store.flush_acks()
        r0 = await journal.partition_reader(0, generation=1)
        await _drain(r0, 10)
        await r0.flush_acks()
        assert await journal.reclaim() == 0  # partition 1 has no consumer yet
        r1 = await journal.partition_reader(1, generation=1)
        await _drain(r1, 10)
        await r1.flush_acks()
        assert await journal.reclaim() == 3  # both partitions' two messages acknowledged
        info = await journal.js.stream_info(settings.stream)
        assert info.state.messages == 0


async def test_r3_stream_loses_nothing_when_a_node_dies_mid_stream(
    nats_cluster: NatsCluster, names: Names
) -> None:
    """Three nodes, replicas 3: kill one while appending, appends go on (retried),
    restart it; every record is in the stream exactly once."""
    settings = _settings(nats_cluster.urls, names, replicas=3)
    async with _journal(settings) as journal:
        info = await journal.js.stream_info(settings.stream)
        assert info.config.num_replicas == 3
        sent: list[bytes] = []
        midway = asyncio.Event()

        async def produce(start: int, count: int) -> None:
            for n in range(start, start + count):
                batch = [_record(d, n) for d in DISTRICTS]
                await journal.append(batch, DISTRICTS)
                sent.extend(batch)
                if n == 30:
                    midway.set()

        await produce(0, 20)
        leader = info.cluster.leader if info.cluster is not None else None
        victim = next(node for node in nats_cluster.nodes if node.server_name == leader)
        producing = asyncio.create_task(produce(20, 60))
        await midway.wait()
        victim.kill()
        await asyncio.wait_for(producing, 60)
        await asyncio.to_thread(victim.start)
        got = await _drain(journal.reader(STORE_CONSUMER), len(sent), within_s=30)
        assert Counter(got) == Counter(sent)
        assert max(Counter(got).values()) == 1
        # The restarted node caught up with the stream: a replica of it again.
        deadline = time.monotonic() + 30
        while True:
            info = await journal.js.stream_info(settings.stream)
            assert info.cluster is not None
            peers = {p.name: p.current for p in info.cluster.replicas or []}
            peers[info.cluster.leader or ""] = True
            if peers.get(victim.server_name):
                break
            assert time.monotonic() < deadline, f"{victim.server_name} never caught up: {peers}"
            await asyncio.sleep(0.2)


async def test_unreadable_message_is_skipped_not_fatal(journal: JetStreamJournal) -> None:
    """A message not in the hub's format (a foreign publisher) is logged and skipped."""
    nc = await nats.connect(list(journal.settings.url))
    try:
        js = nc.jetstream()
        district = DISTRICTS[2]
        p = journal.partition_of(district)
        await js.publish(journal.subject(p), b"not a frame")
        await journal.append([_record(district, 1)], [district])
        reader = await journal.partition_reader(p, generation=1)
        assert await _drain(reader, 1) == [_record(district, 1)]
    finally:
        await nc.close()


async def test_appends_wait_without_a_quorum_and_complete_after(
    nats_cluster: NatsCluster, names: Names
) -> None:
    """With two of three nodes down the stream cannot acknowledge: an append waits
    (is_full says so: ingest stops acknowledging devices) and completes, stored once,
    when the nodes are back."""
    settings = _settings(nats_cluster.urls, names, replicas=3, publish_timeout_s=1.0)
    async with _journal(settings) as journal:
        await journal.append([_record("d01", 0)], ["d01"])
        down = nats_cluster.nodes[1:]
        for node in down:
            node.kill()
        pending = asyncio.create_task(journal.append([_record("d01", 1)], ["d01"]))
        deadline = time.monotonic() + 20
        while not journal.is_full:
            assert time.monotonic() < deadline, "the append should be waiting"
            assert not pending.done(), "acknowledged without a quorum"
            await asyncio.sleep(0.05)
        for node in down:
            await asyncio.to_thread(node.start)
        await asyncio.wait_for(pending, 60)
        assert not journal.is_full
        got = await _drain(journal.reader(STORE_CONSUMER), 2, within_s=30)
        assert sorted(got) == [_record("d01", 0), _record("d01", 1)]
