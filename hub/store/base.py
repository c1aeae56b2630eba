"""The store protocol every telemetry backend implements (one contract test suite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from hub.messages import Reading

Aggregate = Literal["mean", "min", "max", "last", "count"]
AGGREGATES: tuple[Aggregate, ...] = ("mean", "min", "max", "last", "count")


class StoreUnavailable(Exception):
    """The store cannot be reached or answered 5xx: retry later, nothing is lost."""


class StoreQueryError(ValueError):
    """The store refused a query (bad request); the message says why. Not retryable."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: points written, and readings the store refused for good."""

    written: int
    refused: Sequence[tuple[Reading, str]] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class TelemetryQuery:
    """Raw or aggregated points of one device over a time range.

    ``every_ms`` and ``agg`` go together: both set means buckets of ``every_ms``
    aligned to the epoch, each with ``agg`` of the values in it. ``descending``
    returns the newest first (and ``limit`` keeps the newest).
    """

    asset_type: str
    device_id: str
    start_ms: int
    end_ms: int
    metrics: Sequence[str] | None = None
    every_ms: int | None = None
    agg: Aggregate | None = None
    limit: int = 10_000
    descending: bool = False


@dataclass(frozen=True, slots=True)
class AreaQuery:
    """Figures across every device of one asset type, per district and time bucket.

    Buckets of ``every_ms`` are aligned to the epoch; ``[start_ms, end_ms)`` should be
    whole buckets. Booleans count as 1 and 0.
    """

    asset_type: str
    metrics: Sequence[str]
    start_ms: int
    end_ms: int
    every_ms: int


@dataclass(frozen=True, slots=True)
class AreaCell:
    """One district, bucket and metric: how many devices reported it, how many readings,
    and their sum, min and max. Values flagged out of range are not counted."""

    district: str
    bucket_ms: int
    metric: str
    devices: int
    readings: int
    total: float
    min: float
    max: float

    @property
    def mean(self) -> float:
        """The mean of the readings."""
        return self.total / self.readings


@dataclass(frozen=True, slots=True)
class Point:
    """One value of one metric at one instant (a bucket start when aggregated)."""

    ts_ms: int
    metric: str
    value: float | None


class TelemetryStore(Protocol):
    """A place readings are kept: written by the store sink, read by API and backtests."""

    name: str

    async def open(self) -> None:
        """Connect / create what is needed; raise StoreUnavailable if unreachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Write readings idempotently (same point again overwrites).

        Raises StoreUnavailable when the whole batch should be retried later.
        """
        ...

    async def ping(self) -> bool:
        """True when the store accepts writes right now."""
        ...

    async def query(self, query: TelemetryQuery) -> list[Point]:
        """Points of one device, raw or aggregated, ordered by time (newest first when
        ``descending``) then metric."""
        ...

    async def area_aggregate(self, query: AreaQuery) -> list[AreaCell]:
        """Per district, bucket and metric, across the devices of ``query.asset_type``
        (open data publishes these); cells with no reading are left out. Order is
        unspecified. May take seconds over a city's day: it never blocks the event loop."""
        ...

    def history(
        self, start_ms: int, end_ms: int, asset_types: Sequence[str] | None = None
    ) -> AsyncIterator[Reading]:
        """Every stored reading in ``[start_ms, end_ms)`` ordered by time (backtests)."""
        ...
