"""Partition rule-state snapshots in NATS against a real nats-server: saved with their
stream position, restored by a new owner, fenced against the old one; and a partition
taken over resumes exactly where its state and its consumer's acknowledgements end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from hub.clock import FakeClock, SystemClock
from hub.cluster.snapshots import SnapshotFenced, SnapshotStore
from hub.journal.jetstream import JetStreamJournal
from hub.settings import JournalSettings, NatsSettings
from tests.conftest import Names
from tests.services import NatsServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A NATS connection to the session's server."""
    nc = await nats.connect([nats_server.url])
    yield nc
    await nc.close()


async def _store(client: Client, names: Names, worker: str) -> SnapshotStore:
    store = SnapshotStore(
        client, worker_id=worker, replicas=1, clock=FakeClock(), bucket=names.stream()
    )
    await store.open()
    return store


async def test_a_new_owner_restores_the_latest_snapshot_and_fences_the_old(
    client: Client, names: Names
) -> None:
    """The claimer gets the last saved state and its position; the previous owner's next
    save is refused and leaves the new owner's state as it is."""
    a = await _store(client, names, "a")
    assert await a.claim(3, generation=10) is None
    await a.save(3, 120, b"state at 120")
    await a.save(3, 250, b"state at 250")
    b = await _store(client, names, "b")
    restored = await b.claim(3, generation=11)
    assert restored is not None
    assert (restored.position, restored.data, restored.worker) == (250, b"state at 250", "a")
    with pytest.raises(SnapshotFenced):
        await a.save(3, 300, b"stale owner")
    await b.save(3, 310, b"state at 310")
    c = await _store(client, names, "c")
    latest = await c.claim(3, generation=12)
    assert latest is not None
    assert (latest.position, latest.data) == (310, b"state at 310")


async def test_large_snapshots_round_trip_and_old_ones_go(client: Client, names: Names) -> None:
    """A state of several MiB is stored in chunks and comes back whole; a superseded
    snapshot is deleted."""
    a = await _store(client, names, "a")
    await a.claim(0, generation=1)
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB
    await a.save(0, 10, b"small")
    await a.save(0, 20, big)
    b = await _store(client, names, "b")
    restored = await b.claim(0, generation=2)
    assert restored is not None
    assert restored.data == big
    listed = [info.name for info in await a.objects.list(ignore_deletes=True)]
    assert listed == ["partition-0-20-1"]


async def test_save_without_a_claim_is_refused(client: Client, names: Names) -> None:
    """Only a worker that claimed the partition saves its state."""
    a = await _store(client, names, "a")
    with pytest.raises(SnapshotFenced):
        await a.save(5, 1, b"x")


async def test_takeover_resumes_from_the_snapshot_position_exactly_once(
    nats_server: NatsServer, client: Client, names: Names
) -> None:
    """Owner A folds records into its state, snapshots and acknowledges, folds more and
    dies; owner B restores A's snapshot and reads on: every record is in B's state once."""
    stream = names.stream()
    settings = NatsSettings(
        url=nats_server.url,
        stream=stream,
        subject_prefix=stream,
        replicas=1,
        partitions=2,
        max_bytes=64 * 1024 * 1024,
    )
    async with JetStreamJournal(
        settings, JournalSettings(commit_interval_ms=1), clock=SystemClock(), worker_id="a"
    ) as journal:
        district = "d01"
        p = journal.partition_of(district)
        sent = [f"r{n:03d}".encode() for n in range(60)]
        for n in range(0, 30, 5):
            await journal.append(sent[n : n + 5], [district] * 5)
        # Owner A.
        snaps_a = await _store(client, names, "a")
        assert await snaps_a.claim(p, generation=1) is None
        reader_a = await journal.partition_reader(p, generation=1)
        state_a: list[bytes] = []
        while len(state_a) < 20:
            batch = await reader_a.read(5, 2.0)
            state_a.extend(batch.records)
            position = batch.end_offset
        await snaps_a.save(p, position, json.dumps([r.decode() for r in state_a]).encode())
        reader_a.commit(position)
        await reader_a.flush_acks()
        for n in range(30, 60, 5):
            await journal.append(sent[n : n + 5], [district] * 5)
        more = await reader_a.read(1000, 2.0)  # folded in, never saved: A dies now
        assert more.records
        # Owner B takes over.
        snaps_b = await _store(client, names, "b")
        snapshot = await snaps_b.claim(p, generation=2)
        assert snapshot is not None
        state_b = [s.encode() for s in json.loads(snapshot.data)]
        reader_b = await journal.partition_reader(p, generation=2, resume_from=snapshot.position)
        while len(state_b) < len(sent):
            batch = await reader_b.read(1000, 2.0)
            assert batch.records, f"stalled at {len(state_b)} of {len(sent)}"
            state_b.extend(batch.records)
        assert state_b == sent
        with pytest.raises(SnapshotFenced):
            await snaps_a.save(p, more.end_offset, b"stale")
