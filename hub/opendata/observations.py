"""Observations of one Datastream, paged: a device's readings, or an area's published cells.

A device Datastream reads the telemetry store (one device, one metric, newest or
oldest first); an area Datastream reads the published cells, re-checked against
the current policy (``k``, bucket, delay). ``$filter`` bounds on the time are
pushed down to the query; every other comparison is checked on each candidate,
and so are the bounds (the answer is exact, never approximate).

Paging is by keyset: a page ends with ``@iot.nextLink`` carrying ``$skiptoken``,
the time of the last observation looked at, so the next page is one range query
however deep the client pages. A selective filter may fill a page slowly: each
request looks at no more than ``SCAN_BUDGET`` observations and, when that runs out,
returns what it found (possibly fewer than ``$top``) with a link that goes on
from there. ``$count`` counts up to ``COUNT_BUDGET`` observations, and is a 400
beyond (narrow the time range).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from hub.clock import Clock
from hub.opendata.index import Stream
from hub.opendata.odata import Filter, QueryError, matches
from hub.opendata.state import CellQuery, OpenDataState
from hub.store.base import TelemetryQuery, TelemetryStore

#: Observations one request looks at for one page at most.
SCAN_BUDGET = 20_000
#: Observations ``$count`` may count at most.
COUNT_BUDGET = 100_000
#: ``$skip`` on Observations at most (deeper: follow the nextLink or filter on time).
MAX_SKIP = 10_000
#: Latest instant a device range reaches (readings may be up to minutes in the future).
FUTURE_MS = 86_400_000
TIME_PATHS = ("phenomenonTime", "resultTime")


@dataclass(frozen=True, slots=True)
class Observation:
    """One reading of a device, or one published cell of an area (``end_ms`` set)."""

    stream: Stream
    start_ms: int
    result: float | bool
    end_ms: int | None = None
    devices: int | None = None
    readings: int | None = None

    @property
    def id(self) -> str:
        """``{datastream id}:{start ms}``."""
        return f"{self.stream.id}:{self.start_ms}"

    def values(self) -> dict[str, object]:
        """What ``$filter`` compares (a cell's phenomenonTime is an interval)."""
        if self.end_ms is None:
            time: object = self.start_ms
            result_time = self.start_ms
        else:
            time = (self.start_ms, self.end_ms)
            result_time = self.end_ms
        return {
            "@iot.id": self.id,
            "phenomenonTime": time,
            "resultTime": result_time,
            "result": self.result,
            "Datastream/@iot.id": self.stream.id,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One page: the observations, and where the next page starts (None: no more)."""

    items: list[Observation]
    resume_ms: int | None = None
    skip_left: int = 0


class ObservationSource:
    """Reads Observations of Datastreams (module docstring)."""

    def __init__(self, store: TelemetryStore, state: OpenDataState, clock: Clock) -> None:
        self.store = store
        self.state = state
        self.clock = clock

    async def page(
        self,
        stream: Stream,
        flt: Filter,
        *,
        descending: bool,
        top: int,
        skip: int,
        resume_ms: int | None,
    ) -> Page:
        """Up to ``top`` observations after ``skip`` matching ones, from ``resume_ms`` on."""
        if skip > MAX_SKIP:
            raise QueryError(
                f"$skip over Observations goes to {MAX_SKIP} at most; follow @iot.nextLink or "
                "filter on phenomenonTime"
            )
        low, high = self._bounds(stream, flt)
        if resume_ms is not None:
            if descending:
                high = min(high, resume_ms - 1)
            else:
                low = max(low, resume_ms + 1)
        need = skip + top + 1
        matched: list[Observation] = []
        scanned = 0
        cursor: int | None = None
        exhausted = False
        while len(matched) < need:
            chunk = min(max(need * 2, 200), 5000)
            batch = await self._fetch(stream, low, high, descending, chunk)
            for obs in batch:
                cursor = obs.start_ms
                if matches(flt, obs.values()):
                    matched.append(obs)
            scanned += len(batch)
            if len(batch) < chunk:
                exhausted = True
                break
            assert cursor is not None
            if descending:
                high = cursor - 1
            else:
                low = cursor + 1
            if scanned >= SCAN_BUDGET:
                break
        if len(matched) > skip + top:
            items = matched[skip : skip + top]
            resume = items[-1].start_ms if items else None
            return Page(items, resume if top else None)
        items = matched[skip:]
        if exhausted or cursor is None or top == 0:
            return Page(items)
        return Page(items, cursor, max(0, skip - len(matched)))

    async def count(self, stream: Stream, flt: Filter) -> int:
        """How many observations match ``flt`` (a 400 beyond ``COUNT_BUDGET``)."""
        low, high = self._bounds(stream, flt)
        total = 0
        scanned = 0
        while True:
            batch = await self._fetch(stream, low, high, False, 5000)
            total += sum(1 for obs in batch if matches(flt, obs.values()))
            scanned += len(batch)
            if len(batch) < 5000:
                return total
            if scanned >= COUNT_BUDGET:
                raise QueryError(
                    f"$count goes to {COUNT_BUDGET} observations at most; narrow the "
                    "phenomenonTime range"
                )
            low = batch[-1].start_ms + 1

    async def one(self, stream: Stream, start_ms: int) -> Observation | None:
        """The observation of ``stream`` at ``start_ms``, if it is public."""
        found = await self._fetch(stream, start_ms, start_ms, False, 1)
        return found[0] if found and found[0].start_ms == start_ms else None

    # ------------------------------------------------------------------ internals

    def _bounds(self, stream: Stream, flt: Filter) -> tuple[int, int]:
        """The closed range of start times ``flt`` allows, and the policy allows."""
        now = self.clock.now_ms()
        metric = stream.metric
        length = metric.bucket_ms if stream.device_id is None else 0
        low, high = 0, now + FUTURE_MS
        if stream.device_id is None:
            # Published cells, re-checked: the bucket must have ended a delay ago.
            high = now - metric.delay_ms - length
        for path in TIME_PATHS:
            # A cell's phenomenonTime is its interval, its resultTime its end.
            span = length if path == "phenomenonTime" else 0
            shift = length if path == "resultTime" else 0
            for c in flt.on(path):
                value = int(c.value)
                if c.op == "gt":
                    low = max(low, value + 1 - shift)
                elif c.op == "ge":
                    low = max(low, value - shift)
                elif c.op == "lt":
                    high = min(high, value - span if span else value - 1 - shift)
                elif c.op == "le":
                    high = min(high, value - span + 1 if span else value - shift)
                elif c.op == "eq":
                    low = max(low, value - shift)
                    high = min(high, value - shift)
        return low, high

    async def _fetch(
        self, stream: Stream, low: int, high: int, descending: bool, limit: int
    ) -> list[Observation]:
        """Observations with start in ``[low, high]``, in time order, at most ``limit``."""
        if low > high:
            return []
        metric = stream.metric
        if stream.device_id is not None:
            points = await self.store.query(
                TelemetryQuery(
                    metric.asset_type,
                    stream.device_id,
                    low,
                    high + 1,
                    [metric.metric],
                    limit=limit,
                    descending=descending,
                )
            )
            return [
                Observation(stream, p.ts_ms, _result(p.value, metric.type))
                for p in points
                if p.metric == metric.metric and p.value is not None
            ]
        cells = await asyncio.to_thread(
            self.state.cells,
            CellQuery(
                asset_type=metric.asset_type,
                metric=metric.metric,
                district=stream.district,
                bucket_ms=metric.bucket_ms,
                min_devices=metric.k,
                first_start_ms=low,
                last_start_ms=high,
                descending=descending,
                limit=limit,
            ),
        )
        return [
            Observation(
                stream,
                c.start_ms,
                c.mean,
                end_ms=c.end_ms,
                devices=c.devices,
                readings=c.readings,
            )
            for c in cells
        ]


def _result(value: float, kind: str) -> float | bool:
    return value != 0 if kind == "bool" else value


def parse_observation_id(text: str) -> tuple[str, int] | None:
    """``{datastream id}:{ms}`` split, or None when it is not one."""
    stream, sep, ms = text.rpartition(":")
    if not sep or not stream or not ms.isascii() or not ms.isdigit() or len(ms) > 15:
        return None
    return stream, int(ms)


def newest_first(orderby: Sequence[tuple[str, bool]]) -> bool:
    """Whether ``$orderby`` asks for the newest first (400 for what cannot be ordered)."""
    if not orderby:
        return False
    if len(orderby) > 1 or orderby[0][0] not in ("phenomenonTime", "resultTime", "@iot.id"):
        raise QueryError(
            "Observations are ordered by phenomenonTime (or resultTime, @iot.id: the same "
            "order) only, asc or desc"
        )
    return orderby[0][1]
