"""The store sink: journal batches -> the telemetry store, retried until they land.

Readings stay in the journal until :meth:`StoreSink.write` returns (the runtime
commits the store consumer's checkpoint only then), so while the store is down
the sink simply keeps retrying, with capped, jittered exponential backoff
(hub.retry), until it is back or the task is cancelled. Nothing is dropped: what
the store refuses for good (a field type conflict, a name the layout cannot hold)
is returned for the dead-letter store, with the store's reason.

What the sink does is reported to a :class:`SinkObserver`: by default the hub's
Prometheus metrics; in the store writer process (hub.store.writer) a collector
whose figures travel to the hub, which serves them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tenacity import RetryCallState

from hub import metrics
from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import Reading, Rejection
from hub.retry import Backoff, forever
from hub.settings import InfluxSettings
from hub.store.base import StoreUnavailable, TelemetryStore

log = get_logger(__name__)

#: Backoff between attempts while the store is unavailable (hub.retry): starts near
#: this, doubles, jittered, never above RETRY_MAX_S (an outage is noticed within it).
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
STORE_BACKOFF = Backoff(RETRY_MIN_S, RETRY_MAX_S)

#: Why a write failed: points refused for good, a store bug isolated, an outage.
FailureKind = Literal["refused", "error", "unavailable"]
#: Where the store stands: not answered yet since the hub started, taking writes, or down.
StoreState = Literal["opening", "writable", "unavailable"]


@dataclass
class StoreHealth:
    """Whether the store takes writes, as ``GET /api/v1/health`` shows it.

    Writable only once the store has answered (opened, or taken a write): a hub
    started while InfluxDB is down says so from its first moment, not after its
    first failed write. ``last_error`` is the error of the current outage only; it
    is cleared when the store answers again (the log keeps the history), and
    ``since_ms`` says when the current state began. One object per hub, shared by
    the inline sink or by the store writer processes one after another.
    """

    state: StoreState = "opening"
    since_ms: int | None = None
    last_error: str | None = None

    @property
    def writable(self) -> bool:
        """True while the store takes writes."""
        return self.state == "writable"

    def unavailable(self, error: str, now_ms: int) -> bool:
        """The store did not answer (``error``); True when this begins an outage."""
        self.last_error = error
        if self.state == "unavailable":
            return False
        self.state, self.since_ms = "unavailable", now_ms
        return True

    def answered(self, now_ms: int) -> bool:
        """The store answered; True when it was not writable until now."""
        if self.state == "writable":
            return False
        self.state, self.since_ms, self.last_error = "writable", now_ms, None
        return True

    def report(self) -> dict[str, Any]:
        """The health document's part for the store (without the backend's name)."""
        return {
            "writable": self.writable,
            "state": self.state,
            "since_ms": self.since_ms,
            "last_error": self.last_error,
        }


class SinkObserver(Protocol):
    """What the sink reports as it writes (the store metrics of docs/storage.md)."""

    def written(self, batch_size: int, seconds: float, points: int) -> None:
        """A batch landed: its size, the write's duration, the points written."""

    def failed(self, kind: FailureKind, count: int) -> None:
        """``count`` failures of ``kind``."""


class MetricsObserver:
    """The default observer: the hub's Prometheus metrics."""

    def written(self, batch_size: int, seconds: float, points: int) -> None:
        """Observe a landed batch."""
        metrics.STORE_WRITE_SECONDS.observe(seconds)
        metrics.STORE_BATCH_SIZE.observe(batch_size)
        metrics.STORE_POINTS_WRITTEN.inc(points)

    def failed(self, kind: FailureKind, count: int) -> None:
        """Count failures."""
        metrics.STORE_WRITE_ERRORS.labels(kind=kind).inc(count)


async def open_store(
    store: TelemetryStore,
    on_unavailable: Callable[[str], None],
    backoff: Backoff = STORE_BACKOFF,
) -> None:
    """Open ``store``, retrying while it is unavailable (``on_unavailable`` hears why),
    with the sink's backoff: readings wait in the journal meanwhile."""

    def failed(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        on_unavailable(str(exc) if exc is not None else "store unavailable")

    async for attempt in forever(backoff, retry_on=StoreUnavailable, before_sleep=failed):
        with attempt:
            await store.open()


def refusal(reading: Reading, why: str, received_ms: int) -> Rejection:
    """The dead letter of a reading the store refused for good (reason ``store_refused``)."""
    metrics_text = ",".join(f"{k}={v}" for k, v in reading.metrics.items())
    return Rejection(
        topic=f"store:{reading.asset_type}/{reading.device_id}",
        reason="store_refused",
        detail=why,
        payload=f"ts={reading.ts_ms} seq={reading.seq} {metrics_text}".encode()[:1024],
        received_ms=received_ms,
        device_id=reading.device_id,
        district=reading.district,
    )


class StoreSink:
    """Writes readings to a store in batches, retrying outages, returning refusals."""

    def __init__(
        self,
        store: TelemetryStore,
        settings: InfluxSettings,
        *,
        clock: Clock,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        observer: SinkObserver | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        self.store = store
        self.observer: SinkObserver = observer or MetricsObserver()
        self.batch_size = settings.batch_size
        self.clock = clock
        self.backoff = Backoff(retry_min_s, retry_max_s)
        self.health = health if health is not None else StoreHealth()
        self._outage_since: float | None = None

    @property
    def healthy(self) -> bool:
        """True while the store takes writes (``health.writable``)."""
        return self.health.writable

    @property
    def last_error(self) -> str | None:
        """The current outage's error (``health.last_error``)."""
        return self.health.last_error

    async def open(self) -> None:
        """Open the store, retrying while it is unavailable; writable once it answers."""

        def unavailable(error: str) -> None:
            self._unavailable(error, "store unavailable; readings wait in the journal")

        await open_store(self.store, unavailable, self.backoff)
        self._recovered()

    async def write(self, readings: Sequence[Reading]) -> Sequence[tuple[Reading, str]]:
        """Write every reading (retrying while the store is down); return the refused ones."""
        refused: list[tuple[Reading, str]] = []
        for start in range(0, len(readings), self.batch_size):
            batch = readings[start : start + self.batch_size]
            refused.extend(await self._write_batch(batch))
        return refused

    async def _write_batch(self, batch: Sequence[Reading]) -> list[tuple[Reading, str]]:
        retrying = forever(
            self.backoff, retry_on=StoreUnavailable, before_sleep=self._on_unavailable
        )
        async for attempt in retrying:
            with attempt:
                began = time.perf_counter()
                try:
                    result = await self.store.write(batch)
                except StoreUnavailable:
                    raise
                except Exception as exc:  # a store bug must not stop the sink: isolate it
                    return await self._isolate(batch, exc)
                seconds = time.perf_counter() - began
        self.observer.written(len(batch), seconds, result.written)
        self._recovered()
        if result.refused:
            self.observer.failed("refused", len(result.refused))
            first = result.refused[0]
            log.warning(
                "store refused readings; they go to dead letters",
                store=self.store.name,
                count=len(result.refused),
                first_device=first[0].device_id,
                first_reason=first[1],
            )
        return list(result.refused)

    async def _isolate(self, batch: Sequence[Reading], exc: Exception) -> list[tuple[Reading, str]]:
        """Split a batch that makes the store fail unexpectedly, down to the reading at fault."""
        self.observer.failed("error", 1)
        if len(batch) == 1:
            log.error(
                "store failed on a reading; refused", device=batch[0].device_id, error=repr(exc)
            )
            return [(batch[0], f"store error: {exc!r}")]
        mid = len(batch) // 2
        return [*await self._write_batch(batch[:mid]), *await self._write_batch(batch[mid:])]

    def _on_unavailable(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        self._unavailable(
            str(exc) if exc is not None else "store unavailable",
            "store unavailable; readings wait in the journal and writes are retried",
        )
        # After: the store writer's observer reports the outage with its error.
        self.observer.failed("unavailable", 1)

    def _unavailable(self, error: str, news: str) -> None:
        if self.health.unavailable(error, self.clock.now_ms()):
            self._outage_since = self.clock.monotonic()
            log.warning(news, store=self.store.name, error=error)
        else:
            log.debug("store still unavailable", store=self.store.name, error=error)

    def _recovered(self) -> None:
        error = self.health.last_error
        if not self.health.answered(self.clock.now_ms()):
            return
        if self._outage_since is None:
            return  # the first answer after the hub started, without an outage
        outage = self.clock.monotonic() - self._outage_since
        self._outage_since = None
        log.info(
            "store writable again",
            store=self.store.name,
            outage_s=round(outage, 3),
            last_error=error,
        )
