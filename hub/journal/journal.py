"""The journal: an append-only, segmented, group-committed on-disk log.

Ingest appends encoded records (:mod:`hub.records`) and acknowledges them to the
broker once :meth:`Journal.append` returns: by then they are on disk (written
and fsynced). Consumers (the store sink, the live stages) each read at their
own pace through a :class:`JournalReader` and commit how far they got; the
checkpoints are files, so a restart resumes exactly there (at-least-once: what
was read but not committed is read again, and every consumer is idempotent).

Decisions, and why:

* **Group commit.** Appends arriving within ``commit_interval_ms`` of the first
  pending one share one ``write`` + ``fdatasync``, run in a worker thread so the
  event loop never waits on the disk. Appends arriving while an fsync is under
  way simply join the next group. Latency is one interval plus one fsync.
* **Readers see only durable records**, woken the moment a commit lands (an
  ``asyncio.Event`` per commit generation, no polling), so alerts follow a
  reading by milliseconds.
* **Retention by consumer.** A segment is deleted once every registered
  consumer's *persisted* checkpoint is past it. Consumers are registered by
  name the first time :meth:`Journal.reader` is called and are remembered on
  disk (``consumers/<name>.offset``); :meth:`Journal.unregister` forgets one.
  With no consumer registered nothing is deleted.
* **A new consumer starts at the oldest retained offset**, not at the head:
  the first run of the hub registers its consumers a moment after ingest
  starts, and the readings journaled in between must reach the store too.
* **Bounded by ``max_bytes``.** When the next append would exceed it, append
  waits (never drops, never raises) until consumers commit and segments can be
  removed; ``hub_journal_full`` is 1 meanwhile and the episode is logged once
  at its start and once at its end. Ingest stops acknowledging, so the broker
  holds further messages: back-pressure reaches the broker, not the heap.
* **Crash safety.** Each record is framed with its length and a CRC32; on open
  the last segment is scanned and a torn or garbage tail is truncated away
  (logged with the number of bytes dropped). Those records were never
  acknowledged, so the broker redelivers them.
* **Checkpoints are persisted asynchronously.** :meth:`JournalReader.commit` is
  cheap and synchronous for the caller; the write-temp + fsync + rename runs in
  the worker thread right after, and :meth:`Journal.close` writes whatever is
  still pending. Retention only ever trusts checkpoints already on disk.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from hub import metrics
from hub.clock import Clock
from hub.journal import segments as seg
from hub.journal.base import JournalBatch, JournalClosed, JournalError
from hub.logging import get_logger
from hub.settings import JournalSettings

log = get_logger(__name__)

_T = TypeVar("_T")

#: A group is written without waiting for the rest of the interval once it is this big.
GROUP_MAX_BYTES = 4 * 1024 * 1024
#: Bytes a reader asks the file for at once (page cache reads: fast, bounded).
READ_CHUNK_BYTES = 1024 * 1024
CONSUMER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CONSUMERS_DIR = "consumers"


@dataclass(slots=True)
class _Pending:
    payloads: list[bytes]
    nbytes: int
    future: asyncio.Future[int]


@dataclass(slots=True)
class _Counters:
    commits: int = 0
    records: int = 0
    corrupt_skips: int = 0
    waits_full: int = 0


class Journal:
    """Append-only segmented log with group commit and per-consumer checkpoints.

    ``async with Journal(path, settings, clock=clock) as journal:`` or
    :meth:`open` / :meth:`close` explicitly.
    """

    def __init__(self, directory: Path, settings: JournalSettings, *, clock: Clock) -> None:
        self.directory = Path(directory)
        self.settings = settings
        self.clock = clock
        self._consumers_dir = self.directory / CONSUMERS_DIR
        self._segments: list[seg.Segment] = []
        self._durable_end = 0
        self._bytes_on_disk = 0
        self._writer: seg.SegmentWriter | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._opened = False
        self._closed = False
        # Group commit.
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._inflight_bytes = 0
        self._pending_since = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._io_lock = asyncio.Lock()
        self._thread_lock = threading.Lock()
        self._data_event = asyncio.Event()
        # Back-pressure.
        self._admission = asyncio.Lock()
        self._space_event = asyncio.Event()
        self._full = False
        self._full_since_ms = 0
        # Consumers.
        self._committed: dict[str, int] = {}
        self._persisted: dict[str, int] = {}
        self._readers: dict[str, JournalReader] = {}
        self._persister: asyncio.Task[None] | None = None
        self._ckpt_lock = threading.Lock()
        self.counters = _Counters()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Recover the log on disk (truncating a torn tail) and load the checkpoints."""
        if self._opened:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._consumers_dir.mkdir(exist_ok=True)
        self._check_format()
        found = seg.scan(self.directory)
        if not found:
            first = seg.Segment(0, 0, seg.segment_path(self.directory, 0))
            first.path.touch()
            seg.fsync_dir(self.directory)
            found = [first]
        last = found[-1]
        valid = seg.valid_length(last.path)
        if valid < last.size:
            log.warning(
                "journal tail was torn (crash mid-write); truncated it",
                segment=last.path.name,
                dropped_bytes=last.size - valid,
                kept_bytes=valid,
            )
            os.truncate(last.path, valid)
            fd = os.open(last.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            last.size = valid
        self._segments = found
        self._durable_end = last.end
        self._writer = seg.SegmentWriter(self.directory, self.settings.segment_bytes, last)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="hub-journal"
        )
        oldest = self.oldest_offset
        for name, found_offset in seg.read_checkpoints(self._consumers_dir).items():
            offset = found_offset
            if offset is None:
                log.error("journal checkpoint unreadable; consumer replays all", consumer=name)
                offset = oldest
            elif offset > self._durable_end:
                log.error(
                    "journal checkpoint beyond the log's end (data lost on disk?); clamped",
                    consumer=name,
                    checkpoint=offset,
                    head=self._durable_end,
                )
                offset = self._durable_end
            elif offset < oldest:
                offset = oldest
            self._committed[name] = offset
            self._persisted[name] = offset
        self._opened = True
        self._delete_consumed_now()
        self._update_gauges()
        log.info(
            "journal open",
            directory=str(self.directory),
            segments=len(self._segments),
            head=self._durable_end,
            bytes=self._bytes_on_disk,
            consumers=dict(self._committed),
        )

    def close(self) -> None:
        """Stop: fail waiting appends, persist pending checkpoints, release files."""
        if self._closed or not self._opened:
            self._closed = True
            return
        self._closed = True
        for entry in self._pending:
            if not entry.future.done():
                entry.future.set_exception(JournalClosed("journal closed before commit"))
        self._pending = []
        for task in (self._flusher, self._persister):
            if task is not None and not task.done():
                with contextlib.suppress(RuntimeError):  # its loop may be gone already
                    task.cancel()
        with self._thread_lock:
            if self._writer is not None:
                self._writer.close()
        self._write_checkpoints(dict(self._committed))
        self._data_event.set()
        self._space_event.set()
        for reader in self._readers.values():
            reader._close_file()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._full:
            metrics.JOURNAL_FULL.set(0)

    async def aclose(self) -> None:
        """Wait for pending commits and checkpoint writes, then close."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})
        if self._persister is not None and not self._persister.done():
            await asyncio.wait({self._persister})
        self.close()

    async def __aenter__(self) -> Journal:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ health

    @property
    def head_offset(self) -> int:
        """Offset just past the last durable record."""
        return self._durable_end

    @property
    def oldest_offset(self) -> int:
        """Offset of the oldest retained byte."""
        return self._segments[0].base if self._segments else 0

    @property
    def bytes_on_disk(self) -> int:
        """Bytes of segment files on disk."""
        return self._bytes_on_disk

    @property
    def is_full(self) -> bool:
        """True while appends wait for consumers to free space."""
        return self._full

    @property
    def fsync_count(self) -> int:
        """fdatasync calls made for record data since open (group commit coalesces them)."""
        return self._writer.fsyncs if self._writer is not None else 0

    @property
    def consumers(self) -> dict[str, int]:
        """Registered consumers and their committed offsets."""
        return dict(self._committed)

    def lags(self) -> dict[str, int]:
        """Bytes each registered consumer has not yet committed."""
        return {name: self._durable_end - off for name, off in self._committed.items()}

    def unread(self) -> dict[str, int]:
        """Bytes each consumer has not yet read: how far behind it really is.

        A consumer commits less often than it reads (the live one every 15 s,
        with the rule state), so :meth:`lags` overstates its delay.
        """
        return {
            name: self._durable_end - (reader.position if reader is not None else off)
            for name, off in self._committed.items()
            for reader in (self._readers.get(name),)
        }

    # ------------------------------------------------------------------ append

    async def append(self, records: Sequence[bytes], districts: Sequence[str] = ()) -> int:
        """Append ``records``; return the end offset once they are on disk (fsynced).

        Waits, without dropping anything, while the journal is full. One partition:
        ``districts`` (see :class:`hub.journal.base.JournalPort`) is not needed.
        """
        self._check_usable()
        if not records:
            return self._durable_end
        payloads = list(records)
        nbytes = 0
        for payload in payloads:
            if len(payload) > seg.MAX_RECORD_BYTES:
                raise ValueError(
                    f"journal record of {len(payload)} bytes exceeds {seg.MAX_RECORD_BYTES}"
                )
            nbytes += seg.HEADER_SIZE + len(payload)
        if self._admission.locked() or not self._has_room(nbytes):
            async with self._admission:  # FIFO: later appends queue behind a waiting one
                await self._wait_for_room(nbytes)
        self._check_usable()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if not self._pending:
            self._pending_since = loop.time()
        self._pending.append(_Pending(payloads, nbytes, future))
        self._pending_bytes += nbytes
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_loop(), name="hub.journal.commit")
        return await future

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.commit_interval_ms / 1000
        try:
            while self._pending and not self._closed:
                wait = self._pending_since + interval - loop.time()
                if wait > 0 and self._pending_bytes < GROUP_MAX_BYTES:
                    await asyncio.sleep(wait)  # later appends join this group meanwhile
                group, self._pending = self._pending, []
                self._inflight_bytes, self._pending_bytes = self._pending_bytes, 0
                payloads = [p for entry in group for p in entry.payloads]
                start = self._durable_end
                async with self._io_lock:
                    began = time.perf_counter()
                    try:
                        touched = await self._in_thread(self._write_group, payloads)
                    except OSError as exc:
                        self._inflight_bytes = 0
                        self._signal_space()
                        log.exception("journal write failed", records=len(payloads))
                        for entry in group:
                            if not entry.future.done():
                                entry.future.set_exception(
                                    JournalError(f"journal write failed: {exc}")
                                )
                        continue
                    metrics.JOURNAL_COMMIT_SECONDS.observe(time.perf_counter() - began)
                self._apply(touched)
                self._inflight_bytes = 0
                self.counters.commits += 1
                self.counters.records += len(payloads)
                offset = start
                for entry in group:
                    offset += entry.nbytes
                    if not entry.future.done():
                        entry.future.set_result(offset)
                self._wake_readers()
                self._update_gauges()
        finally:
            self._flusher = None

    def _write_group(self, payloads: list[bytes]) -> list[tuple[int, int]]:
        with self._thread_lock:
            if self._closed or self._writer is None:
                raise JournalClosed("journal closed")
            return self._writer.write(payloads)

    def _apply(self, touched: list[tuple[int, int]]) -> None:
        """Record new durable sizes (and new segments) after a commit or a roll."""
        for base, size in touched:
            for existing in reversed(self._segments):
                if existing.base == base:
                    existing.size = size
                    break
            else:
                self._segments.append(
                    seg.Segment(base, size, seg.segment_path(self.directory, base))
                )
        self._durable_end = self._segments[-1].end
        self._bytes_on_disk = sum(s.size for s in self._segments)

    def _wake_readers(self) -> None:
        event, self._data_event = self._data_event, asyncio.Event()
        event.set()

    # ------------------------------------------------------------------ back-pressure

    def _used(self) -> int:
        return self._bytes_on_disk + self._inflight_bytes + self._pending_bytes

    def _has_room(self, nbytes: int) -> bool:
        used = self._used()
        # An append bigger than the whole budget still goes into an empty journal.
        return used + nbytes <= self.settings.max_bytes or used == 0

    async def _wait_for_room(self, nbytes: int) -> None:
        if self._has_room(nbytes):
            return
        await self._reclaim(roll=True)
        if self._has_room(nbytes):
            return
        self._enter_full(nbytes)
        try:
            while not self._has_room(nbytes):
                self._check_usable()
                event = self._space_event
                await event.wait()
                await self._reclaim(roll=True)
        finally:
            self._leave_full()

    def _enter_full(self, nbytes: int) -> None:
        self.counters.waits_full += 1
        if self._full:
            return
        self._full = True
        self._full_since_ms = self.clock.now_ms()
        metrics.JOURNAL_FULL.set(1)
        log.error(
            "journal full: ingest waits and acknowledgements are held back "
            "until consumers catch up (raise HUB_JOURNAL__MAX_BYTES or fix the slow consumer)",
            bytes_on_disk=self._bytes_on_disk,
            max_bytes=self.settings.max_bytes,
            waiting_bytes=nbytes,
            lag_bytes=self.lags(),
        )

    def _leave_full(self) -> None:
        if not self._full:
            return
        self._full = False
        metrics.JOURNAL_FULL.set(0)
        log.warning(
            "journal has room again; ingest resumes",
            full_for_s=round((self.clock.now_ms() - self._full_since_ms) / 1000, 3),
            bytes_on_disk=self._bytes_on_disk,
        )

    # ------------------------------------------------------------------ retention

    def _retention_floor(self) -> int | None:
        """Offset below which every registered consumer's checkpoint is on disk."""
        if not self._persisted:
            return None
        return min(self._persisted.values())

    def _consumed_segments(self, floor: int) -> list[seg.Segment]:
        # Never the active (last) segment: the writer holds it open.
        return [s for s in self._segments[:-1] if s.end <= floor]

    def _forget(self, victims: list[seg.Segment]) -> None:
        gone = {id(v) for v in victims}
        self._segments = [s for s in self._segments if id(s) not in gone]
        self._bytes_on_disk = sum(s.size for s in self._segments)

    def _delete_consumed_now(self) -> None:
        floor = self._retention_floor()
        if floor is None:
            return
        victims = self._consumed_segments(floor)
        self._forget(victims)
        _unlink_all([v.path for v in victims])

    async def _reclaim(self, *, roll: bool) -> None:
        """Delete segments every consumer is past; when ``roll``, also a consumed active one."""
        floor = self._retention_floor()
        if floor is None or self._closed:
            return
        if (
            roll
            and floor >= self._durable_end
            and self._segments[-1].size > 0
            and not self._pending
            and self._inflight_bytes == 0
        ):
            async with self._io_lock:
                touched = await self._in_thread(self._roll_active)
                if touched is not None:
                    self._apply(touched)
        victims = self._consumed_segments(floor)
        if victims:
            self._forget(victims)
            await self._in_thread(_unlink_all, [v.path for v in victims])
            log.debug("journal segments removed", count=len(victims), floor=floor)
            self._update_gauges()

    def _roll_active(self) -> list[tuple[int, int]] | None:
        with self._thread_lock:
            if self._closed or self._writer is None:
                return None
            old = self._writer.roll_if_nonempty()
            if old is None:
                return None
            return [old, (self._writer.base, 0)]

    # ------------------------------------------------------------------ consumers

    def reader(self, consumer: str) -> JournalReader:
        """The reader of ``consumer``, registering it (durably) on first use.

        A consumer new to this journal starts at the oldest retained offset.
        """
        self._check_usable()
        if not CONSUMER_RE.fullmatch(consumer):
            raise ValueError(f"bad consumer name {consumer!r}: use [A-Za-z0-9_.-], max 64")
        if consumer not in self._committed:
            start = self.oldest_offset
            seg.write_checkpoint(self._consumers_dir, consumer, start)
            self._committed[consumer] = start
            self._persisted[consumer] = start
            log.info("journal consumer registered", consumer=consumer, offset=start)
        existing = self._readers.get(consumer)
        if existing is not None:
            existing._close_file()
        reader = JournalReader(self, consumer, self._committed[consumer])
        self._readers[consumer] = reader
        self._update_gauges()
        return reader

    def unregister(self, consumer: str) -> None:
        """Forget a consumer for good, so it no longer holds segments on disk."""
        self._committed.pop(consumer, None)
        self._persisted.pop(consumer, None)
        reader = self._readers.pop(consumer, None)
        if reader is not None:
            reader._close_file()
        with contextlib.suppress(FileNotFoundError):
            (self._consumers_dir / f"{consumer}{seg.CHECKPOINT_SUFFIX}").unlink()
        with contextlib.suppress(KeyError):
            metrics.JOURNAL_LAG.remove(consumer)
        self._signal_space()

    def _signal_space(self) -> None:
        """Wake an append waiting for room (it re-checks; spurious wake-ups are fine)."""
        event, self._space_event = self._space_event, asyncio.Event()
        event.set()

    def _commit(self, consumer: str, offset: int) -> None:
        if consumer not in self._committed:
            raise JournalError(f"consumer {consumer!r} is not registered")
        if offset < 0 or offset > self._durable_end:
            raise ValueError(f"offset {offset} outside the journal [0, {self._durable_end}]")
        if offset <= self._committed[consumer]:
            return
        self._committed[consumer] = offset
        metrics.JOURNAL_LAG.labels(consumer=consumer).set(self._durable_end - offset)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the loop (tools, tests): persist now
            self._write_checkpoints({consumer: offset})
            self._persisted[consumer] = offset
            self._delete_consumed_now()
            return
        if self._persister is None or self._persister.done():
            self._persister = loop.create_task(self._persist_loop(), name="hub.journal.checkpoint")

    async def _persist_loop(self) -> None:
        while not self._closed:
            dirty = {n: o for n, o in self._committed.items() if self._persisted.get(n) != o}
            if not dirty:
                return
            await self._in_thread(self._write_checkpoints, dirty)
            for name, offset in dirty.items():
                if name in self._persisted:
                    self._persisted[name] = max(self._persisted[name], offset)
            await self._reclaim(roll=False)
            self._signal_space()

    def _write_checkpoints(self, offsets: dict[str, int]) -> None:
        with self._ckpt_lock:
            for name in offsets:
                # Write the newest committed value: a later commit may have come in.
                latest = self._committed.get(name)
                if latest is None:
                    continue
                try:
                    seg.write_checkpoint(self._consumers_dir, name, latest)
                except OSError:
                    log.exception("journal checkpoint write failed", consumer=name)

    # ------------------------------------------------------------------ helpers

    def _check_format(self) -> None:
        path = self.directory / seg.FORMAT_FILE
        expected = f"hub-journal {seg.FORMAT_VERSION}\n"
        try:
            found = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            path.write_text(expected, encoding="utf-8")
            return
        if found != expected:
            raise JournalError(
                f"{path}: journal format {found.strip()!r} is not {expected.strip()!r}; "
                "drain it with the hub version that wrote it"
            )

    def _check_usable(self) -> None:
        if self._closed:
            raise JournalClosed("journal is closed")
        if not self._opened:
            raise JournalError("journal is not open; call open() first")

    async def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _update_gauges(self) -> None:
        metrics.JOURNAL_BYTES.set(self._bytes_on_disk)
        for name, offset in self._committed.items():
            metrics.JOURNAL_LAG.labels(consumer=name).set(self._durable_end - offset)

    def _segment_for(self, offset: int) -> tuple[int, seg.Segment | None]:
        """Index and segment holding ``offset`` (``None`` if before the oldest)."""
        bases = [s.base for s in self._segments]
        idx = bisect.bisect_right(bases, offset) - 1
        if idx < 0:
            return 0, None
        return idx, self._segments[idx]


class JournalReader:
    """One consumer's cursor: read in order, commit how far it got."""

    def __init__(self, journal: Journal, consumer: str, position: int) -> None:
        self._journal = journal
        self.consumer = consumer
        self._position = position
        self._fd: int | None = None
        self._fd_base = -1

    @property
    def position(self) -> int:
        """Offset of the next record this reader returns."""
        return self._position

    @property
    def committed_offset(self) -> int:
        """The consumer's committed checkpoint."""
        return self._journal._committed.get(self.consumer, self._position)

    @property
    def lag_bytes(self) -> int:
        """Durable bytes not yet committed by this consumer."""
        return self._journal.head_offset - self.committed_offset

    async def read(self, max_records: int, timeout: float) -> JournalBatch:  # noqa: ASYNC109 (the port's signature: a poll with a deadline, not a cancellable wait)
        """Up to ``max_records`` records; waits up to ``timeout`` s when there are none."""
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        journal = self._journal
        deadline: float | None = None
        while True:
            while self._position < journal._durable_end and not journal._closed:
                batch = self._read_now(max_records)
                if batch.records:
                    return batch
            if journal._closed or timeout <= 0:
                return JournalBatch([], self._position)
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + timeout
            remaining = deadline - loop.time()
            if remaining <= 0:
                return JournalBatch([], self._position)
            event = journal._data_event
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                return JournalBatch([], self._position)

    def commit(self, offset: int) -> None:
        """Record that everything before ``offset`` is processed (persisted right after)."""
        self._journal._commit(self.consumer, offset)

    def _read_now(self, max_records: int) -> JournalBatch:
        """Read what is durable at the current position (never waits)."""
        journal = self._journal
        idx, segment = journal._segment_for(self._position)
        if segment is None:
            log.error(
                "journal reader behind the oldest segment; skipping ahead",
                consumer=self.consumer,
                position=self._position,
                oldest=journal.oldest_offset,
            )
            self._position = journal.oldest_offset
            return JournalBatch([], self._position)
        if self._position >= segment.end:
            if idx + 1 < len(journal._segments):
                self._position = journal._segments[idx + 1].base
            return JournalBatch([], self._position)
        fd = self._file_for(segment)
        if fd is None:  # removed under us: move on
            self._position = segment.end
            return JournalBatch([], self._position)
        within = self._position - segment.base
        # Enough for max_records of typical size, never more than a chunk.
        want = min(READ_CHUNK_BYTES, max(64 * 1024, max_records * 512))
        limit = min(segment.end - self._position, want)
        data = os.pread(fd, limit, within)
        records, used, corrupt = seg.parse(data, max_records)
        if not records and not corrupt and len(data) >= seg.HEADER_SIZE:
            # One record larger than a chunk: read exactly it.
            length = int.from_bytes(data[:4], "little")
            data = os.pread(fd, seg.HEADER_SIZE + length, within)
            records, used, corrupt = seg.parse(data, max_records)
        if corrupt and not records:
            journal.counters.corrupt_skips += 1
            log.error(
                "corrupt journal record; skipping the rest of its segment",
                consumer=self.consumer,
                segment=segment.path.name,
                offset=self._position,
                skipped_bytes=segment.end - self._position,
            )
            self._position = segment.end
            return JournalBatch([], self._position)
        if not records and used == 0:
            # Shorter than a header inside a durable segment: treat as corruption.
            self._position = segment.end
            return JournalBatch([], self._position)
        self._position += used
        return JournalBatch(records, self._position)

    def _file_for(self, segment: seg.Segment) -> int | None:
        if self._fd is not None and self._fd_base == segment.base:
            return self._fd
        self._close_file()
        try:
            self._fd = os.open(segment.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        self._fd_base = segment.base
        return self._fd

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._fd_base = -1


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
