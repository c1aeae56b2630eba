"""Rule-state snapshots of the partitions, keyed by stream position, in NATS.

The local journal's live checkpoint is the rule state written with the journal
offset it reflects, then the offset committed. In cluster mode a partition's
owner does the same per partition: it saves the partition's state with the
stream position it reflects (the position just past the last message folded in),
then acknowledges the partition's consumer up to there. A worker taking the
partition over restores the snapshot and reads on from that position
(:meth:`hub.journal.jetstream.JetStreamJournal.partition_reader`, ``resume_from``),
skipping what the snapshot already holds.

Where: the state itself in a NATS object store (``HUB_SNAPSHOTS``; chunked, so a
large state is no problem), and per partition a pointer in a KV bucket of the
same name (``partition.<n>`` -> position, object name, owner) that says which
object is current. Both replicated like the stream.

Fencing: :meth:`SnapshotStore.claim`, called by a new owner before it restores,
rewrites the pointer, and every save replaces the pointer only if it is still at
the revision this owner last wrote. So a worker that lost its lease without
knowing (a long stall) cannot overwrite the new owner's snapshot: its save fails
with :class:`SnapshotFenced` and it stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from hub.clock import Clock
from hub.logging import get_logger

log = get_logger(__name__)

#: The object store and the KV bucket of pointers.
BUCKET = "HUB_SNAPSHOTS"
REQUEST_TIMEOUT_S = 10.0


class SnapshotFenced(Exception):
    """Another worker claimed the partition since this one did: it must stop."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A partition's saved state and the stream position it reflects."""

    partition: int
    position: int
    data: bytes
    worker: str
    saved_ms: int


class SnapshotStore:
    """Save and restore partitions' rule state, fenced by ownership claims."""

    def __init__(
        self,
        client: Client,
        *,
        worker_id: str,
        replicas: int,
        clock: Clock,
        bucket: str = BUCKET,
    ) -> None:
        self._nc = client
        self.worker_id = worker_id
        self._replicas = replicas
        self._clock = clock
        self._bucket = bucket
        self._kv: KeyValue | None = None
        self._objects: ObjectStore | None = None
        # Per claimed partition: the pointer revision this worker wrote last.
        self._fences: dict[int, int] = {}
        self._current: dict[int, str] = {}
        self._generations: dict[int, int] = {}

    async def open(self) -> None:
        """Make or open the bucket of pointers and the object store."""
        js = self._nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        try:
            self._kv = await js.key_value(self._bucket)
        except nats.js.errors.BucketNotFoundError:
            self._kv = await js.create_key_value(
                bucket=self._bucket,
                description="hub rule-state snapshot pointers per partition",
                history=1,
                replicas=self._replicas,
            )
        try:
            self._objects = await js.object_store(self._bucket)
        except nats.js.errors.BucketNotFoundError:
            self._objects = await js.create_object_store(
                self._bucket,
                description="hub rule-state snapshots per partition",
                replicas=self._replicas,
            )

    @property
    def kv(self) -> KeyValue:
        """The pointers (open first)."""
        if self._kv is None:
            raise RuntimeError("snapshots are not open; call open() first")
        return self._kv

    @property
    def objects(self) -> ObjectStore:
        """The snapshots (open first)."""
        if self._objects is None:
            raise RuntimeError("snapshots are not open; call open() first")
        return self._objects

    @staticmethod
    def _key(partition: int) -> str:
        return f"partition.{partition}"

    async def claim(self, partition: int, generation: int) -> Snapshot | None:
        """Become the partition's snapshot writer (``generation``: the lease's) and
        return its latest snapshot, or None when it has none."""
        key = self._key(partition)
        pointer: dict[str, Any] = {}
        try:
            entry = await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        if entry is not None and entry.value:
            pointer = json.loads(entry.value)
        claimed = {**pointer, "owner": self.worker_id, "generation": generation}
        value = json.dumps(claimed, separators=(",", ":")).encode()
        try:
            if entry is None:
                revision = await self.kv.create(key, value)
            else:
                revision = await self.kv.update(key, value, last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            raise SnapshotFenced(
                f"partition {partition}: another worker claimed it at the same time"
            ) from None
        self._fences[partition] = revision
        self._generations[partition] = generation
        name = pointer.get("object")
        if not name:
            self._current.pop(partition, None)
            return None
        self._current[partition] = str(name)
        try:
            found = await self.objects.get(str(name))
        except nats.js.errors.NotFoundError:
            log.error(  # noqa: TRY400 (a state to say, not a bug to trace)
                "snapshot named by its pointer is missing; the partition starts cold",
                partition=partition,
                object=name,
            )
            return None
        data = found.data or b""
        return Snapshot(
            partition=partition,
            position=int(pointer.get("position", 0)),
            data=data,
            worker=str(pointer.get("worker", "")),
            saved_ms=int(pointer.get("saved_ms", 0)),
        )

    async def save(self, partition: int, position: int, data: bytes) -> None:
        """Save ``data`` as the partition's state at ``position``; SnapshotFenced if
        another worker claimed the partition since this one did."""
        fence = self._fences.get(partition)
        if fence is None:
            raise SnapshotFenced(f"partition {partition} was not claimed by this worker")
        generation = self._generations[partition]
        name = f"partition-{partition}-{position}-{generation}"
        await self.objects.put(name, data)
        now_ms = self._clock.now_ms()
        pointer = {
            "position": position,
            "object": name,
            "worker": self.worker_id,
            "owner": self.worker_id,
            "generation": generation,
            "saved_ms": now_ms,
            "bytes": len(data),
        }
        value = json.dumps(pointer, separators=(",", ":")).encode()
        try:
            revision = await self.kv.update(self._key(partition), value, last=fence)
        except nats.js.errors.KeyWrongLastSequenceError:
            self._fences.pop(partition, None)
            await self._delete(name)  # never pointed at: nobody reads it
            raise SnapshotFenced(
                f"partition {partition}: another worker owns it now; its snapshot stands"
            ) from None
        self._fences[partition] = revision
        previous = self._current.get(partition)
        self._current[partition] = name
        if previous and previous != name:
            await self._delete(previous)

    def release(self, partition: int) -> None:
        """Forget the claim (the partition was handed over or lost)."""
        self._fences.pop(partition, None)
        self._current.pop(partition, None)
        self._generations.pop(partition, None)

    async def _delete(self, name: str) -> None:
        try:
            await self.objects.delete(name)
        except nats.js.errors.NotFoundError:
            pass
        except nats.js.errors.Error as exc:  # left behind: only space, never read
            log.warning("old snapshot not deleted", object=name, error=str(exc))
