"""The store writer process: journal records in, store writes out, on another core.

The hub is one asyncio process, and on a busy hub the store sink was the biggest
share of its CPU that no alert waits for: decoding every reading once more,
building line protocol or SQLite rows, and (embedded store) a writer thread that
takes the GIL from the event loop. With ``HUB_STORE__WRITER=process`` (the
default on a machine with two cores or more) that work runs in a child process,
``python -m hub.store.writer``, and the hub only hands it the journal's raw
records. Measured with bench/alerts.py, see docs/storage.md.

The hub stays the journal's only owner. It reads the store consumer's records as
before, ships them with their end offset, and commits that offset when the child
says the batch has landed; retention, checkpoints, health, metrics and dead
letters all stay in the hub. The child knows nothing of the journal:

* hub -> child (stdin), frames of ``u32 length`` + payload: first the settings
  (JSON, secrets included: a pipe, not the environment or the command line, so
  they never show in ``ps``), then one frame per batch: ``u64 end offset``
  followed by the records, each ``u32 length`` + bytes.
* child -> hub (stdout), one JSON object per line: ``{"ready": true}`` once the
  store is open; ``{"done": offset, "refused": [...], "written": [...],
  "failed": {...}}`` per batch, in order; ``{"healthy": false, "last_error":
  ..., "failed": {...}}`` while the store is unavailable.

At-least-once, as before: a batch not reported done is sent again after the
child is restarted (the store is idempotent). Closing stdin stops the child once
it has written what it was sent; a child whose hub died stops at once (it
checks its parent every second), so it never outlives the hub retrying writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import struct
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from pydantic import SecretStr

from hub import records
from hub.clock import Clock, SystemClock
from hub.logging import configure, get_logger
from hub.messages import Reading, Rejection
from hub.settings import Settings
from hub.store.factory import make_store
from hub.store.sink import (
    FailureKind,
    MetricsObserver,
    StoreHealth,
    StoreSink,
    open_store,
    refusal,
)

log = get_logger(__name__)

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: A frame longer than this is a broken stream, not a batch (a batch is at most
#: HUB_INFLUX__BATCH_SIZE records of at most 256 KiB each, far below).
MAX_FRAME_BYTES = 1 << 30
#: How long a stopping hub waits for the child to write what it was sent.
STOP_GRACE_S = 10.0
#: How often the child checks that its hub is still alive.
PARENT_CHECK_S = 1.0
#: Back-pressure, so that what the child has not written waits in the journal, not
#: in memory: the hub buffers up to HIGH_WATER_BYTES for the pipe before ``write``
#: waits, and the child reads ahead of the batch it writes by at most about twice
#: READ_AHEAD_BYTES (asyncio's StreamReader pauses the pipe there; a bigger frame is
#: still read whole).
HIGH_WATER_BYTES = 2 * 1024 * 1024
READ_AHEAD_BYTES = 1024 * 1024
#: The longest reply line the hub reads: a batch whose every reading was refused
#: (HUB_INFLUX__BATCH_SIZE dead letters of at most ~1.5 KiB each in base64).
MAX_REPLY_BYTES = 64 * 1024 * 1024


class StoreWriterDied(RuntimeError):
    """The store writer process exited while the hub was running."""

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"store writer process exited with code {returncode}")
        self.returncode = returncode


# ---------------------------------------------------------------------- hub side


@dataclass
class StoreWriter:
    """The hub's handle on one store writer process (``async with``).

    ``on_done(end_offset, rejections)`` is called for each batch the child has
    landed, in the order sent: the caller keeps the refused readings, then
    commits the offset.
    """

    settings: Settings
    on_done: Callable[[int, list[Rejection]], None]
    #: What the child reports of the store (the hub's one StoreHealth, when given).
    health: StoreHealth = field(default_factory=StoreHealth)
    clock: Clock = field(default_factory=SystemClock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _proc: asyncio.subprocess.Process | None = None
    _pump: asyncio.Task[None] | None = None
    _metrics: MetricsObserver = field(default_factory=MetricsObserver)

    @property
    def healthy(self) -> bool:
        """True while the child's store takes writes (``health.writable``)."""
        return self.health.writable

    @property
    def last_error(self) -> str | None:
        """The current outage's error (``health.last_error``)."""
        return self.health.last_error

    async def __aenter__(self) -> StoreWriter:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.store.writer",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_REPLY_BYTES,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.transport.set_write_buffer_limits(high=HIGH_WATER_BYTES)
        self._send(settings_frame(self.settings))
        self._pump = asyncio.create_task(self._read_replies(), name="hub.store.writer.replies")
        log.info("store writer process started", pid=self._proc.pid)
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc, pump = self._proc, self._pump
        if proc is None or pump is None:
            return
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(ConnectionError):
                proc.stdin.close()
        # What the child had been sent lands and is committed; then it exits. Unless
        # the store is down: then nothing can land, and the journal keeps it all.
        grace = 0.0 if self.health.state == "unavailable" else STOP_GRACE_S
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(pump)
        except (TimeoutError, asyncio.CancelledError, StoreWriterDied):
            pass
        finally:
            if proc.returncode is None:
                log.warning("store writer process did not stop in time; killed", pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreWriterDied):
                await pump

    async def feed(self, batches: AsyncIterator[tuple[list[bytes], int]]) -> None:
        """Send every batch as it comes; return never: raise StoreWriterDied when the
        child exits (its replies are applied until then)."""
        assert self._pump is not None
        sending = asyncio.create_task(self._send_all(batches), name="hub.store.writer.send")
        try:
            await asyncio.wait({sending, self._pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreWriterDied):
                await sending
        if self._pump.done():
            self._pump.result()  # raises StoreWriterDied for an exit code other than 0
        assert self._proc is not None
        raise StoreWriterDied(self._proc.returncode)

    async def _send_all(self, batches: AsyncIterator[tuple[list[bytes], int]]) -> None:
        async for blobs, end_offset in batches:
            await self.write(blobs, end_offset)

    async def write(self, blobs: Sequence[bytes], end_offset: int) -> None:
        """Send a batch of journal records ending at ``end_offset`` (waits while the
        child's pipe is full; raises StoreWriterDied if the child is gone)."""
        proc, pump = self._proc, self._pump
        assert proc is not None
        assert proc.stdin is not None
        assert pump is not None
        if pump.done():
            pump.result()  # raises why it ended
            raise StoreWriterDied(proc.returncode)
        parts = [_U64.pack(end_offset)]
        for blob in blobs:
            parts.append(_U32.pack(len(blob)))
            parts.append(blob)
        self._send(b"".join(parts))
        try:
            await proc.stdin.drain()
        except ConnectionError as exc:
            await proc.wait()
            raise StoreWriterDied(proc.returncode) from exc

    def _send(self, payload: bytes) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write(_U32.pack(len(payload)) + payload)

    async def _read_replies(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                reply = orjson.loads(line)
            except orjson.JSONDecodeError:
                # Not ours (a stray print in a library): said, and skipped.
                log.exception("unreadable reply from the store writer", line=line[:200])
                continue
            self._apply(reply)
        returncode = await proc.wait()
        if returncode != 0:
            raise StoreWriterDied(returncode)

    def _apply(self, reply: dict[str, Any]) -> None:
        for kind, count in reply.get("failed", {}).items():
            self._metrics.failed(kind, int(count))
        now_ms = self.clock.now_ms()
        if reply.get("ready"):
            self.ready.set()
            self.health.answered(now_ms)  # the child opened its store
        if reply.get("healthy") is False:
            self.health.unavailable(reply.get("last_error") or "store unavailable", now_ms)
        if "done" in reply:
            for size, seconds, points in reply.get("written", []):
                self._metrics.written(int(size), float(seconds), int(points))
            rejections = [
                _rejection(records.decode(base64.b64decode(b))) for b in reply.get("refused", [])
            ]
            self.health.answered(now_ms)
            self.on_done(int(reply["done"]), rejections)


def _rejection(message: object) -> Rejection:
    if not isinstance(message, Rejection):
        raise TypeError(f"expected a Rejection, got {type(message).__name__}")
    return message


def settings_frame(settings: Settings) -> bytes:
    """The settings as the child receives them (secrets in clear: for the pipe only)."""
    return orjson.dumps(settings.model_dump(), default=_reveal)


def settings_from_frame(frame: bytes) -> Settings:
    """The child's side of :func:`settings_frame`."""
    return Settings.model_validate(orjson.loads(frame))


def _reveal(value: object) -> object:
    """JSON for what orjson does not know: secrets in clear (for the pipe only), paths."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


# ---------------------------------------------------------------------- child side


class _Reporter:
    """The child's SinkObserver: figures gathered until the next reply carries them;
    an outage is reported at once (no batch lands meanwhile)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, float, int]] = []
        self.failures: dict[str, int] = {}
        self.sink: StoreSink | None = None

    def written(self, batch_size: int, seconds: float, points: int) -> None:
        self.batches.append((batch_size, round(seconds, 6), points))

    def failed(self, kind: FailureKind, count: int) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + count
        if kind == "unavailable":
            self.unavailable(self.sink.last_error if self.sink else None)

    def unavailable(self, error: str | None) -> None:
        _reply({"healthy": False, "last_error": error, **self.take()})

    def take(self) -> dict[str, Any]:
        out: dict[str, Any] = {"written": self.batches, "failed": self.failures}
        self.batches, self.failures = [], {}
        return out


def _reply(message: dict[str, Any]) -> None:
    """One line to the hub. Blocking on purpose: replies are small, and the hub reads
    them as they come."""
    data = orjson.dumps(message) + b"\n"
    while data:
        written = os.write(1, data)
        data = data[written:]


async def _read_frame(stream: asyncio.StreamReader) -> bytes | None:
    try:
        head = await stream.readexactly(_U32.size)
    except asyncio.IncompleteReadError:
        return None  # stdin closed: the hub is stopping us
    (length,) = _U32.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {length} bytes from the hub: the stream is broken")
    return await stream.readexactly(length)


def _unpack_batch(frame: bytes) -> tuple[int, list[Reading]]:
    (end_offset,) = _U64.unpack_from(frame, 0)
    view = memoryview(frame)
    pos = _U64.size
    blobs: list[bytes] = []
    while pos < len(frame):
        (n,) = _U32.unpack_from(frame, pos)
        pos += _U32.size
        blobs.append(bytes(view[pos : pos + n]))
        pos += n
    return end_offset, [m for m in records.decode_all(blobs) if isinstance(m, Reading)]


async def _watch_parent(parent: int) -> None:
    # Polled: nothing wakes a process when its parent dies, and the main loop may be
    # busy retrying a write to a store that is down, not reading the closed pipe.
    while os.getppid() == parent:  # noqa: ASYNC110 (no event to wait for)
        await asyncio.sleep(PARENT_CHECK_S)
    log.error("the hub is gone; store writer exits")
    os._exit(1)


async def _open(settings: Settings, reporter: _Reporter, clock: Clock) -> StoreSink:
    store = make_store(settings, clock)

    def unavailable(error: str) -> None:
        reporter.failures["unavailable"] = reporter.failures.get("unavailable", 0) + 1
        reporter.unavailable(error)

    await open_store(store, unavailable)
    reporter.sink = StoreSink(store, settings.influx, clock=clock, observer=reporter)
    return reporter.sink


async def _child(parent: int) -> int:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=READ_AHEAD_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin.buffer)
    first = await _read_frame(stdin)
    if first is None:
        return 0
    settings = settings_from_frame(first)
    configure(settings.log)
    # Its lines share the hub's log: say whose they are.
    structlog.contextvars.bind_contextvars(process="store-writer")
    watchdog = asyncio.create_task(_watch_parent(parent), name="hub.store.writer.parent")
    reporter = _Reporter()
    clock = SystemClock()
    sink = await _open(settings, reporter, clock)
    _reply({"ready": True})
    try:
        while (frame := await _read_frame(stdin)) is not None:
            end_offset, readings = _unpack_batch(frame)
            refused = await sink.write(readings) if readings else []
            now_ms = clock.now_ms()
            dead = [
                base64.b64encode(records.encode(refusal(r, why, now_ms))).decode()
                for r, why in refused
            ]
            _reply({"done": end_offset, "refused": dead, **reporter.take()})
    finally:
        watchdog.cancel()
        await sink.store.close()
    return 0


def main() -> int:
    """``python -m hub.store.writer``: started by the hub, never by hand."""
    # A terminal's Ctrl-C and a service manager's SIGTERM reach the whole process
    # group; the hub stops its writer itself (closing its input), after the writes
    # it has sent, so the child leaves those signals to the hub.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return asyncio.run(_child(os.getppid()))


if __name__ == "__main__":
    sys.exit(main())
