"""The journal on NATS JetStream: the replicated stream the workers of a cluster share.

In cluster mode (``HUB_JOURNAL__BACKEND=jetstream``) this replaces the local
journal (:mod:`hub.journal.journal`) behind the same port
(:class:`hub.journal.base.JournalPort`): ingest appends each batch and
acknowledges the devices only once the stream has acknowledged every message of
it; the store and the live stages read through durable consumers and commit
(acknowledge) once their work is durable.

Decisions, and why:

* **One stream, partitioned by district.** Subjects are
  ``<HUB_NATS__SUBJECT_PREFIX>.<partition>``; a record's partition is
  ``crc32(district, UTF-8) mod P`` (:func:`partition_of`: stable across
  processes, machines and Python versions, unlike ``hash``). A district's
  readings all land in one partition, so the area rules of a district see all of
  it, in order. P is fixed when the stream is created and written into the
  stream's description (``partitions=P``); every worker reads it from there, so
  all route alike whatever their own ``HUB_NATS__PARTITIONS`` says (a different
  value is logged). Changing P means a new stream (docs/scaling.md).
* **Replicated.** ``HUB_NATS__REPLICAS`` copies (3 on a three-node cluster): a
  publish is acknowledged once a majority of them has it, so one node may die
  without losing an acknowledged reading.
* **Group commit and frames.** Appends arriving within
  ``HUB_JOURNAL__COMMIT_INTERVAL_MS`` of the first pending one form a group; a
  group becomes one message per partition (more if over ``FRAME_MAX_BYTES``),
  the records framed as in a journal segment after a format byte. One message
  per few hundred readings, not per reading: a publish and its acknowledgement
  cost about what a whole small frame does. Groups are published one after
  another (a partition's order is the order of the groups), the partitions of a
  group concurrently.
* **Retried, never dropped.** A publish that times out or finds no stream leader
  (a node is down, an election is under way) is retried with capped backoff, with
  the same ``Nats-Msg-Id``, so the stream stores it once (its duplicate window is
  ``DUPLICATE_WINDOW_S``). Ingest waits meanwhile and the broker holds the
  unacknowledged messages: back-pressure, as when the local journal is full.
* **Bounded, with retention by consumer.** The stream keeps messages (limits
  retention, ``discard new`` at ``HUB_NATS__MAX_BYTES``: a full stream refuses
  appends, which then wait, ``hub_journal_full`` is 1). :meth:`reclaim` purges
  what every consumer has acknowledged, as the local journal deletes the segments
  every checkpoint is past; any worker may run it, it is idempotent.
* **Consumers.** The store stage is one shared durable pull consumer
  (``store``, explicit acks): any number of workers pull from it and acknowledge
  each message after its write; one that dies leaves its unacknowledged messages
  to be redelivered to the others after ``STORE_ACK_WAIT_S`` (a write repeated is
  harmless: same point). While a write waits (an InfluxDB outage) the reader
  tells the server it is still working on its messages, so they are not
  redelivered meanwhile. Each partition's live stage has a durable pull consumer
  of its own (``live-p<partition>-g<generation>``, ack all), used by the one
  worker that holds the partition's lease. A worker taking a partition over
  creates a consumer of a new generation that starts where the old one's
  acknowledgements (and the partition's rule-state snapshot) end, then deletes
  the old one: the dead worker's unacknowledged messages come at once, in order
  (an old consumer would redeliver them only after its ack wait, after newer
  ones), and a worker that was presumed dead cannot acknowledge anything for
  the new owner.
* **Positions.** A partition reader's positions are stream sequence numbers
  (exclusive ends), so a partition's rule state is saved with the position it
  reflects and a new owner skips what it already contains. The shared store
  reader's positions count its own deliveries (its messages come in any order).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from hub import metrics, natsclient
from hub.clock import Clock
from hub.journal import segments as seg
from hub.journal.base import JournalBatch, JournalClosed, JournalError
from hub.logging import get_logger
from hub.retry import Backoff
from hub.settings import JournalSettings, NatsSettings

log = get_logger(__name__)

#: First byte of every message of the stream: the frame format.
FORMAT_VERSION = 1
#: A message carries at most about this much (NATS's own limit is 1 MiB by default).
FRAME_MAX_BYTES = 512 * 1024
#: The shared store consumer.
STORE_CONSUMER = "store"
#: Prefix of a partition's live consumers (``live-p3-g17``).
LIVE_PREFIX = "live-p"
#: A publish retried within this window with the same id is stored once.
DUPLICATE_WINDOW_S = 120.0
#: Publishes that fail are retried from 50 ms, doubling up to 2 s.
PUBLISH_RETRY = Backoff(first_s=0.05, max_s=2.0)
#: Store messages not acknowledged within this long go to another store reader.
STORE_ACK_WAIT_S = 60.0
#: The live stage acknowledges at its checkpoints (every 15 s); a redelivery within
#: the same owner is skipped, so this only needs to be comfortably longer.
LIVE_ACK_WAIT_S = 300.0
#: Unacknowledged store messages outstanding at once (over all its readers).
STORE_MAX_ACK_PENDING = 4096
#: Messages asked for per fetch.
FETCH_MESSAGES = 64
#: How often a reader tells the server it still works on what it holds (a fraction
#: of the ack wait, so a slow write is never taken for a dead reader).
KEEPALIVE_FRACTION = 1 / 3
#: The stream's description, where the partition count lives.
_DESCRIPTION = "hub readings journal; partitions={n}; partition = crc32(district) mod {n}"
_PARTITIONS_RE = re.compile(r"\bpartitions=(\d+)\b")
_HEAD = bytes((FORMAT_VERSION,))
#: nats-py reports a full stream with this JetStream error code (max bytes exceeded).
_ERR_STREAM_FULL = 10077
#: JetStream error code: the servers cannot reserve the stream's max bytes.
_ERR_NO_STORAGE = 10047
#: JetStream error code: a stream of that name exists with another configuration.
_ERR_STREAM_NAME_IN_USE = 10058


def partition_of(district: str, partitions: int) -> int:
    """The partition of ``district``'s records: ``crc32(district) mod partitions``."""
    return zlib.crc32(district.encode("utf-8")) % partitions


def pack(records: Sequence[bytes]) -> bytes:
    """Records as one stream message: the format byte, then segment frames."""
    return _HEAD + seg.frame_all(list(records))


def unpack(body: bytes) -> list[bytes]:
    """The records of one stream message (:func:`pack`); JournalError if it is not one."""
    if not body or body[0] != FORMAT_VERSION:
        raise JournalError(f"stream message of unknown format {body[:1]!r}")
    data = memoryview(body)[1:]
    records, used, corrupt = seg.parse(data, len(data))
    if corrupt or used != len(data):
        raise JournalError("stream message with a damaged frame")
    return records


@dataclass(slots=True)
class _Pending:
    records: Sequence[bytes]
    districts: Sequence[str]
    future: asyncio.Future[int]


class JetStreamJournal:
    """The cluster's journal: a replicated, partitioned JetStream stream.

    ``async with JetStreamJournal(nats_settings, journal_settings, clock=..., worker_id=...)``;
    give ``client`` to share a connection (the cluster's leases use the same one).
    """

    def __init__(
        self,
        settings: NatsSettings,
        journal: JournalSettings,
        *,
        clock: Clock,
        worker_id: str,
        client: Client | None = None,
        store_ack_wait_s: float = STORE_ACK_WAIT_S,
    ) -> None:
        self.settings = settings
        self.store_ack_wait_s = store_ack_wait_s
        self.journal_settings = journal
        self.clock = clock
        self.worker_id = worker_id
        self._nc = client
        self._own_client = client is None
        self._js: JetStreamContext | None = None
        self.partitions = settings.partitions
        self._partition_cache: dict[str, int] = {}
        self._frame_max = FRAME_MAX_BYTES
        # Message ids: this process's own prefix (a restarted worker starts again at 0).
        self._id_prefix = f"{worker_id}.{os.urandom(6).hex()}."
        self._ids = itertools.count()
        self._head = 0
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._full = False
        self._unavailable_since: float | None = None
        self._readers: dict[str, JetStreamReader] = {}
        self._opened = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect (unless given a client), then make or check the stream and the store consumer."""
        if self._opened:
            return
        if self._nc is None:
            self._nc = await natsclient.connect(self.settings, name=f"hub-{self.worker_id}")
        self._js = self._nc.jetstream(timeout=self.settings.publish_timeout_s)
        if self._nc.max_payload:
            self._frame_max = min(FRAME_MAX_BYTES, self._nc.max_payload - 1024)
        await self._ensure_stream()
        await self._ensure_store_consumer()
        self._opened = True

    async def aclose(self) -> None:
        """Finish the group being published, stop the readers, close an own connection."""
        if self._closed:
            return
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait({flusher}, timeout=self.settings.publish_timeout_s)
        self._closed = True
        for entry in self._pending:
            if not entry.future.done():
                entry.future.set_exception(JournalClosed("journal closed before publish"))
        self._pending = []
        if flusher is not None and not flusher.done():
            flusher.cancel()
        for reader in list(self._readers.values()):
            await reader.aclose()
        self._readers.clear()
        if self._full:
            metrics.JOURNAL_FULL.set(0)
        if self._own_client and self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def __aenter__(self) -> JetStreamJournal:
        try:
            await self.open()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (open first)."""
        if self._js is None:
            raise JournalError("journal is not open; call open() first")
        return self._js

    async def _ensure_stream(self) -> None:
        s = self.settings
        try:
            info = await self.js.stream_info(s.stream)
        except nats.js.errors.NotFoundError:
            config = api.StreamConfig(
                name=s.stream,
                description=_DESCRIPTION.format(n=s.partitions),
                subjects=[f"{s.subject_prefix}.*"],
                retention=api.RetentionPolicy.LIMITS,
                discard=api.DiscardPolicy.NEW,
                max_bytes=s.max_bytes,
                storage=api.StorageType.FILE,
                num_replicas=s.replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
            )
            try:
                info = await self.js.add_stream(config)
                log.info(
                    "journal stream created",
                    stream=s.stream,
                    partitions=s.partitions,
                    replicas=s.replicas,
                    max_bytes=s.max_bytes,
                )
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _ERR_STREAM_NAME_IN_USE:
                    raise
                info = await self.js.stream_info(s.stream)  # another worker made it first
            except nats.js.errors.ServerError as exc:
                if exc.err_code == _ERR_NO_STORAGE:
                    raise JournalError(
                        f"NATS cannot reserve HUB_NATS__MAX_BYTES={s.max_bytes} for stream"
                        f" {s.stream!r} ({exc.description}): lower it, or give the servers more"
                        " (jetstream max_file_store)"
                    ) from exc
                raise
        found = _PARTITIONS_RE.search(info.config.description or "")
        if found is None or int(found.group(1)) < 1:
            raise JournalError(
                f"NATS stream {s.stream!r} exists but was not made by the hub (its description"
                " names no partitions); use another HUB_NATS__STREAM or remove it"
            )
        self.partitions = int(found.group(1))
        if self.partitions != s.partitions:
            log.warning(
                "the stream's partition count is not HUB_NATS__PARTITIONS; the stream's is used"
                " (fixed when the stream was made: docs/scaling.md)",
                stream=s.stream,
                stream_partitions=self.partitions,
                setting=s.partitions,
            )
        if info.config.num_replicas != s.replicas:
            log.warning(
                "the stream's replicas are not HUB_NATS__REPLICAS",
                stream=s.stream,
                stream_replicas=info.config.num_replicas,
                setting=s.replicas,
            )
        self._head = info.state.last_seq + 1

    async def _ensure_store_consumer(self) -> None:
        config = api.ConsumerConfig(
            durable_name=STORE_CONSUMER,
            filter_subject=f"{self.settings.subject_prefix}.*",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.store_ack_wait_s,
            max_ack_pending=STORE_MAX_ACK_PENDING,
            max_deliver=-1,
        )
        with contextlib.suppress(nats.js.errors.BadRequestError):  # exists: keep it as it is
            await self.js.add_consumer(self.settings.stream, config)

    # ------------------------------------------------------------------ routing

    def subject(self, partition: int) -> str:
        """The subject of ``partition``."""
        return f"{self.settings.subject_prefix}.{partition}"

    def partition_of(self, district: str) -> int:
        """The partition of ``district`` in this stream."""
        found = self._partition_cache.get(district)
        if found is None:
            found = self._partition_cache[district] = partition_of(district, self.partitions)
        return found

    # ------------------------------------------------------------------ health

    @property
    def head_offset(self) -> int:
        """Just past the last sequence this worker saw acknowledged (or found at open)."""
        return self._head

    @property
    def is_full(self) -> bool:
        """True while appends wait: the stream is full, or no server acknowledges."""
        return self._full or self._unavailable_since is not None

    def lags(self) -> dict[str, int]:
        """Messages each of this worker's readers has not yet acknowledged."""
        return {name: reader.lag for name, reader in self._readers.items()}

    def unread(self) -> dict[str, int]:
        """Messages each of this worker's readers has not yet received."""
        return {name: reader.unread for name, reader in self._readers.items()}

    # ------------------------------------------------------------------ append

    async def append(self, records: Sequence[bytes], districts: Sequence[str] = ()) -> int:
        """Publish ``records`` to their partitions; return once the stream acknowledged
        them all (replicated), with the position just past the last.

        Waits, retrying, while the stream is full or unreachable; never drops.
        """
        self._check_usable()
        if not records:
            return self._head
        if len(districts) != len(records):
            raise ValueError(
                f"the journal on JetStream routes by district: {len(records)} records,"
                f" {len(districts)} districts"
            )
        nbytes = 0
        for record in records:
            if len(record) + seg.HEADER_SIZE + 1 > self._frame_max:
                raise ValueError(
                    f"journal record of {len(record)} bytes exceeds what one NATS message"
                    f" carries ({self._frame_max}); lower HUB_INGEST__MAX_PAYLOAD_BYTES"
                )
            nbytes += len(record) + seg.HEADER_SIZE
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if not self._pending:
            self._pending_since = loop.time()
        self._pending.append(_Pending(records, districts, future))
        self._pending_bytes += nbytes
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop(), name="hub.journal.publish")
        return await future

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.journal_settings.commit_interval_ms / 1000
        while self._pending and not self._closed:
            wait = self._pending_since + interval - loop.time()
            if wait > 0 and self._pending_bytes < FRAME_MAX_BYTES * self.partitions:
                await asyncio.sleep(wait)  # later appends join this group meanwhile
            group, self._pending = self._pending, []
            self._pending_bytes = 0
            began = time.perf_counter()
            try:
                end = await self._publish_group(group)
            except BaseException as exc:
                # Closed or cancelled (the hub stops): the appenders hear it, nothing
                # was acknowledged to a device, the broker redelivers.
                failure = exc if isinstance(exc, Exception) else JournalClosed("journal closed")
                for entry in group:
                    if not entry.future.done():
                        entry.future.set_exception(failure)
                if isinstance(exc, JournalClosed):
                    return
                if not isinstance(exc, Exception):
                    raise
                continue
            metrics.JOURNAL_COMMIT_SECONDS.observe(time.perf_counter() - began)
            self._head = max(self._head, end)
            for entry in group:
                if not entry.future.done():
                    entry.future.set_result(end)

    async def _publish_group(self, group: list[_Pending]) -> int:
        """Frame the group per partition and publish it; the position past its last message."""
        by_partition: dict[int, list[list[bytes]]] = {}
        sizes: dict[int, int] = {}
        for entry in group:
            for record, district in zip(entry.records, entry.districts, strict=True):
                p = self.partition_of(district)
                frames = by_partition.setdefault(p, [[]])
                size = len(record) + seg.HEADER_SIZE
                if frames[-1] and sizes[p] + size > self._frame_max - 1:
                    frames.append([])
                    sizes[p] = 0
                frames[-1].append(record)
                sizes[p] = sizes.get(p, 0) + size
        results = await asyncio.gather(
            *(self._publish_frames(p, frames) for p, frames in by_partition.items())
        )
        return max(results) + 1

    async def _publish_frames(self, partition: int, frames: list[list[bytes]]) -> int:
        """Publish one partition's frames in order; the last sequence."""
        subject = self.subject(partition)
        last = 0
        for frame in frames:
            last = await self._publish(subject, pack(frame), self._id_prefix + str(next(self._ids)))
        return last

    async def _publish(self, subject: str, body: bytes, msg_id: str) -> int:
        """One publish, retried with the same id until the stream acknowledges it."""
        attempt = 0
        while True:
            self._check_usable()
            try:
                ack = await self.js.publish(
                    subject,
                    body,
                    timeout=self.settings.publish_timeout_s,
                    headers={"Nats-Msg-Id": msg_id},
                )
            except nats.errors.ConnectionClosedError:
                raise JournalClosed("NATS connection closed") from None
            except nats.js.errors.APIError as exc:
                if exc.err_code == _ERR_STREAM_FULL:
                    await self._stream_full()
                else:
                    self._unavailable(exc)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                self._unavailable(exc)
            else:
                self._available()
                return int(ack.seq)
            natsclient.still_running()
            await asyncio.sleep(PUBLISH_RETRY.delay(attempt))
            attempt += 1

    async def _stream_full(self) -> None:
        if not self._full:
            self._full = True
            metrics.JOURNAL_FULL.set(1)
            log.error(
                "journal stream full: ingest waits and acknowledgements are held back until"
                " the consumers catch up (raise HUB_NATS__MAX_BYTES or fix the slow consumer)",
                stream=self.settings.stream,
                max_bytes=self.settings.max_bytes,
            )
        with contextlib.suppress(Exception):  # best effort: it is retried at the next failure
            await self.reclaim()

    def _unavailable(self, exc: BaseException) -> None:
        if self._unavailable_since is None:
            self._unavailable_since = self.clock.monotonic()
            log.warning(
                "journal stream not acknowledging; retrying (ingest waits)",
                stream=self.settings.stream,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _available(self) -> None:
        if self._full:
            self._full = False
            metrics.JOURNAL_FULL.set(0)
            log.warning("journal stream has room again; ingest resumes")
        if self._unavailable_since is not None:
            log.info(
                "journal stream acknowledging again",
                after_s=round(self.clock.monotonic() - self._unavailable_since, 3),
            )
            self._unavailable_since = None

    # ------------------------------------------------------------------ consumers

    def reader(self, consumer: str) -> JetStreamReader:
        """The reader of the shared ``store`` consumer (the only shared one)."""
        self._check_usable()
        if consumer != STORE_CONSUMER:
            raise ValueError(
                f"the journal on JetStream shares only the {STORE_CONSUMER!r} consumer;"
                " live stages read their partitions (partition_reader)"
            )
        existing = self._readers.get(consumer)
        if existing is not None:
            return existing
        reader = JetStreamReader(self, consumer, ordered=False, ack_wait=self.store_ack_wait_s)
        self._readers[consumer] = reader
        return reader

    async def partition_reader(
        self, partition: int, *, generation: int, resume_from: int = 0
    ) -> JetStreamReader:
        """The live reader of ``partition`` for its new owner.

        Creates the consumer ``live-p<partition>-g<generation>`` (``generation``:
        the owner's lease revision, new at every acquisition), starting just past
        what the partition's earlier consumers acknowledged and ``resume_from`` (the
        position of the rule-state snapshot the owner restored), deletes the
        earlier ones, and skips records before ``resume_from``.
        """
        self._check_usable()
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} outside 0..{self.partitions - 1}")
        stream = self.settings.stream
        prefix = f"{LIVE_PREFIX}{partition}-"
        name = f"{prefix}g{generation}"
        earlier = [ci for ci in await self.js.consumers_info(stream) if ci.name.startswith(prefix)]
        acked = max((_ack_floor(ci) for ci in earlier if ci.name != name), default=0)
        start = max(acked + 1, resume_from, 1)
        fresh = not any(ci.name == name for ci in earlier)
        if fresh:
            await self.js.add_consumer(
                stream,
                api.ConsumerConfig(
                    durable_name=name,
                    filter_subject=self.subject(partition),
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=start,
                    ack_policy=api.AckPolicy.ALL,
                    ack_wait=LIVE_ACK_WAIT_S,
                    max_ack_pending=-1,
                    max_deliver=-1,
                ),
            )
        for ci in earlier:
            if ci.name != name:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await self.js.delete_consumer(stream, ci.name)
        log.info(
            "partition consumer ready",
            partition=partition,
            consumer=name,
            start=start,
            resume_from=resume_from,
            replaced=[ci.name for ci in earlier if ci.name != name],
        )
        old = self._readers.pop(name, None)
        if old is not None:
            await old.aclose()
        reader = JetStreamReader(
            self,
            name,
            ordered=True,
            ack_wait=LIVE_ACK_WAIT_S,
            skip_before=resume_from,
            fresh=fresh,
        )
        self._readers[name] = reader
        return reader

    async def release_reader(self, reader: JetStreamReader) -> None:
        """Stop ``reader`` (a partition given up); its consumer stays for the next owner."""
        if self._readers.get(reader.consumer) is reader:
            del self._readers[reader.consumer]
        await reader.aclose()

    async def reclaim(self) -> int:
        """Purge what every consumer has acknowledged; return the first sequence kept
        (0: nothing purged, e.g. while a partition has no consumer yet)."""
        self._check_usable()
        stream = self.settings.stream
        # The stream's end first: a consumer found with nothing pending afterwards has
        # acknowledged everything of its partition up to there.
        last = (await self.js.stream_info(stream)).state.last_seq
        floors: dict[str, int] = {}
        for ci in await self.js.consumers_info(stream):
            name = ci.name
            if name == STORE_CONSUMER:
                key = name
            elif name.startswith(LIVE_PREFIX):
                key = name.rsplit("-", 1)[0]
            else:
                continue  # someone else's consumer: not the hub's to wait for
            done = not ci.num_pending and not ci.num_ack_pending
            floor = last if done else _ack_floor(ci)
            floors[key] = max(floors.get(key, 0), floor)
        wanted = {STORE_CONSUMER} | {f"{LIVE_PREFIX}{p}" for p in range(self.partitions)}
        if not wanted <= floors.keys():
            return 0
        keep_from = min(floors[k] for k in wanted) + 1
        info = await self.js.stream_info(stream)
        if keep_from > info.state.first_seq:
            await self.js.purge_stream(stream, seq=keep_from)
            log.debug("journal stream purged", stream=stream, keep_from=keep_from)
            return keep_from
        return 0

    def _check_usable(self) -> None:
        if self._closed:
            raise JournalClosed("journal is closed")
        if not self._opened:
            raise JournalError("journal is not open; call open() first")


def _ack_floor(info: api.ConsumerInfo) -> int:
    """The last stream sequence ``info``'s consumer has acknowledged with all before it."""
    return int(info.ack_floor.stream_seq) if info.ack_floor is not None else 0


class JetStreamReader:
    """A consumer's cursor on the stream: read in order, commit (acknowledge) how far it got.

    ``ordered`` readers (a partition's live stage) use stream sequences as positions
    and skip what is before their start or was redelivered; the shared store reader
    numbers its deliveries instead.
    """

    def __init__(
        self,
        journal: JetStreamJournal,
        consumer: str,
        *,
        ordered: bool,
        ack_wait: float,
        skip_before: int = 0,
        fresh: bool = False,
    ) -> None:
        self._journal = journal
        self.consumer = consumer
        self._ordered = ordered
        self._ack_wait = ack_wait
        self._position = skip_before
        self._delivered = 0
        # Consumer sequence of the last delivery taken (ordered readers): 0 on a consumer
        # just made (its first is 1), None when unknown (a consumer found as it was).
        self._last_delivery: int | None = 0 if fresh else None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._buffer: deque[Msg] = deque()
        # Delivered, not yet acknowledged: (position just past it, message).
        self._unacked: deque[tuple[int, Msg]] = deque()
        self._num_pending = 0
        self._acks: asyncio.Queue[tuple[Msg, bool]] = asyncio.Queue()
        self._acker: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def position(self) -> int:
        """Position just past the last record returned."""
        return self._position

    @property
    def lag(self) -> int:
        """Messages of this consumer not yet acknowledged (delivered or not)."""
        return self._num_pending + len(self._buffer) + len(self._unacked)

    @property
    def unread(self) -> int:
        """Messages of this consumer not yet returned by :meth:`read`."""
        return self._num_pending + len(self._buffer)

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        if self._sub is None:
            journal = self._journal
            self._sub = await journal.js.pull_subscribe_bind(
                self.consumer, stream=journal.settings.stream
            )
        if self._acker is None:
            self._acker = asyncio.create_task(
                self._ack_loop(), name=f"hub.journal.ack.{self.consumer}"
            )
            self._keepalive = asyncio.create_task(
                self._keepalive_loop(), name=f"hub.journal.keepalive.{self.consumer}"
            )
        return self._sub

    async def read(self, max_records: int, timeout: float) -> JournalBatch:  # noqa: ASYNC109 (the port's signature)
        """Whole messages, about ``max_records`` records (at least one message's worth);
        waits up to ``timeout`` s when there are none."""
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if self._closed:
            return JournalBatch([], self._position)
        if not self._buffer and timeout > 0:
            await self._fetch(timeout)
        records: list[bytes] = []
        while self._buffer and (not records or len(records) < max_records):
            msg = self._buffer[0]
            if self._ordered and self._missed_before(msg):
                await self._restart()
                break
            self._buffer.popleft()
            records.extend(self._take(msg))
        return JournalBatch(records, self._position)

    def _missed_before(self, msg: Msg) -> bool:
        """True when a delivery before ``msg`` never arrived (its consumer sequence
        skips one): lost with a connection to a node that died, or dropped by the client."""
        delivery = int(msg.metadata.sequence.consumer)
        last = self._last_delivery
        missed = last is not None and delivery > last + 1
        if not missed:
            self._last_delivery = delivery
        return missed

    async def _restart(self) -> None:
        """Start the consumer again at its acknowledged position, so the deliveries lost
        come now and in order (the server would redeliver them only after the ack wait,
        after newer ones); what this reader already returned is skipped."""
        journal = self._journal
        stream = journal.settings.stream
        info = await journal.js.consumer_info(stream, self.consumer)
        acked = _ack_floor(info)
        await journal.js.delete_consumer(stream, self.consumer)
        config = info.config
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = acked + 1
        await journal.js.add_consumer(stream, config)
        log.warning(
            "a partition delivery was lost (connection to a NATS node lost?); its consumer"
            " restarts at its acknowledged position",
            consumer=self.consumer,
            acknowledged=acked,
            position=self._position,
        )
        self._buffer.clear()
        # Delivered by the old consumer: the new one delivers them again (skipped up to
        # the position) and acknowledging a later message acknowledges them.
        self._unacked.clear()
        self._last_delivery = 0
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _fetch(self, timeout: float) -> None:  # noqa: ASYNC109
        sub = await self._subscription()
        try:
            msgs = await sub.fetch(FETCH_MESSAGES, timeout=timeout)
        except (nats.errors.TimeoutError, TimeoutError):
            natsclient.still_running()
            return
        except nats.errors.Error as exc:  # reconnecting, leader election: the caller reads again
            log.debug("journal fetch failed; retried", consumer=self.consumer, error=str(exc))
            await asyncio.sleep(min(timeout, 0.5))
            return
        natsclient.still_running()
        self._buffer.extend(msgs)
        if msgs:
            self._num_pending = int(msgs[-1].metadata.num_pending)

    def _take(self, msg: Msg) -> list[bytes]:
        """The records of a delivered message, tracking it for acknowledgement."""
        if self._ordered:
            seq = int(msg.metadata.sequence.stream)
            if seq < self._position:
                # Before the snapshot this owner resumed from, or redelivered after an
                # ack wait: already in the state. Acknowledged with the next commit.
                return []
            end = seq + 1
        else:
            self._delivered += 1
            end = self._delivered
        self._position = end
        self._unacked.append((end, msg))
        try:
            return unpack(msg.data)
        except JournalError as exc:
            # Only a foreign publisher on the hub's subjects gets here.
            log.error(  # noqa: TRY400 (the message says what is wrong; no traceback)
                "unreadable journal message skipped",
                consumer=self.consumer,
                error=str(exc),
                bytes=len(msg.data),
            )
            return []

    def commit(self, offset: int) -> None:
        """Acknowledge every message before ``offset`` (sent right after, in order)."""
        last: Msg | None = None
        while self._unacked and self._unacked[0][0] <= offset:
            _, msg = self._unacked.popleft()
            if self._ordered:
                last = msg  # ack policy "all": the last one acknowledges those before
            else:
                self._acks.put_nowait((msg, True))
        if last is not None:
            self._acks.put_nowait((last, True))

    async def _ack_loop(self) -> None:
        while True:
            msg, ack = await self._acks.get()
            try:
                if ack:
                    await msg.ack()
                else:
                    await msg.in_progress()
            except nats.errors.Error as exc:
                # Lost with the connection: the message is redelivered and done again
                # (every consumer is idempotent), or skipped by an ordered reader.
                log.debug("journal ack not sent", consumer=self.consumer, error=str(exc))
            finally:
                self._acks.task_done()

    async def _keepalive_loop(self) -> None:
        """Tell the server every so often that what this reader holds is being worked on."""
        while True:
            await asyncio.sleep(self._ack_wait * KEEPALIVE_FRACTION)
            for _, msg in list(self._unacked):
                self._acks.put_nowait((msg, False))
            for msg in list(self._buffer):
                self._acks.put_nowait((msg, False))

    async def flush_acks(self) -> None:
        """Wait until the acknowledgements queued so far have been handed to the client."""
        if self._acker is not None and not self._acker.done():
            await self._acks.join()
        nc = self._journal._nc
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)

    async def aclose(self) -> None:
        """Send the acknowledgements queued, then stop (what is unacknowledged is redelivered)."""
        if self._closed:
            return
        await self.flush_acks()
        self._closed = True
        for task in (self._acker, self._keepalive):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._buffer.clear()
