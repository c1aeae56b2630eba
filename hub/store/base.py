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
    aligned to the epoch, each with ``agg`` of the values in it.
    """

    asset_type: str
    device_id: str
    start_ms: int
    end_ms: int
    metrics: Sequence[str] | None = None
    every_ms: int | None = None
    agg: Aggregate | None = None
    limit: int = 10_000


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
        """Points of one device, raw or aggregated, ordered by time then metric."""
        ...

    def history(
        self, start_ms: int, end_ms: int, asset_types: Sequence[str] | None = None
    ) -> AsyncIterator[Reading]:
        """Every stored reading in ``[start_ms, end_ms)`` ordered by time (backtests)."""
        ...
