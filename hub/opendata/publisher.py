"""Publication: turns what the store holds into released aggregate cells and daily rows.

What it guarantees:

- **k-anonymity of aggregates.** A cell (district, bucket, metric) of a
  ``public_aggregate`` metric is published only when at least ``k`` devices
  reported in it; smaller cells are suppressed (not stored, not zero): absent
  from every answer. The release log counts them, never names them.
- **No differencing.** The daily row of an aggregate-only metric is the sum of the
  day's *published* cells, never a fresh figure over the day: a fresh daily mean
  minus the published hours would give away the suppressed ones.
- **The delay holds.** A bucket is published once its end plus the metric's
  ``delay`` (and ``settle_s`` for late readings, whichever is longer) has passed;
  a day once the longest of its metrics' waits has.
- **Published once.** Released rows are never rewritten (readings arriving after
  their bucket was published stay in the store but not in open data), so a
  download is reproducible; each release records what, when, under which policy
  version, and the SHA-256 of its rows. A stretch where no device reported is
  passed over without a release.

What it costs: one area query per stream and due stretch (at most a day at a time),
inside the store, off the event loop, one at a time, with a pause between. A first
run goes back ``backfill_days``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import astuple

import orjson

from hub import metrics as hub_metrics
from hub.clock import Clock
from hub.logging import get_logger
from hub.opendata.policy import OpenDataPolicy, PublishedMetric
from hub.opendata.state import (
    Cell,
    CellQuery,
    DailyRow,
    NewRelease,
    OpenDataState,
    Release,
)
from hub.settings import OpenDataSettings
from hub.store.base import AreaCell, AreaQuery, StoreUnavailable, TelemetryStore

log = get_logger(__name__)

DAY_MS = 86_400_000
#: Pause between two publication steps (each is one store query): others go first.
STEP_PAUSE_S = 0.05


def cells_stream(metric: PublishedMetric) -> str:
    """Publication stream of one aggregate metric's cells (a new bucket is a new stream)."""
    return f"cells/{metric.asset_type}/{metric.metric}/{metric.bucket_ms}"


def daily_dataset(asset_type: str) -> str:
    """Id of an asset type's daily dataset (``/open/v1/datasets/{id}.csv``)."""
    return f"{asset_type}-daily"


def digest(rows: Sequence[object]) -> str:
    """SHA-256 of published rows, in the order given (the release log's fingerprint)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(orjson.dumps(astuple(row)))  # type: ignore[call-overload]
        h.update(b"\n")
    return h.hexdigest()


class Publisher:
    """Publishes what became due (``publish_due``), or keeps doing so (``run``)."""

    def __init__(
        self,
        policy: OpenDataPolicy,
        store: TelemetryStore,
        state: OpenDataState,
        clock: Clock,
        settings: OpenDataSettings,
    ) -> None:
        self.policy = policy
        self.store = store
        self.state = state
        self.clock = clock
        self.settings = settings

    async def run(self) -> None:
        """Publish what is due every ``publish_every_s``; a store outage waits for the next.

        Publication is not on the path from a reading to an alert: whatever goes wrong
        here is logged and tried again next time, and never stops the hub.
        """
        while True:
            try:
                await self.publish_due()
            except StoreUnavailable as exc:
                log.warning("open data: store unavailable, publishing later", error=str(exc))
            except Exception:
                log.exception("open data: publishing failed; trying again later")
            await asyncio.sleep(self.settings.publish_every_s)

    async def publish_due(self) -> list[Release]:
        """Everything due now: the policy (when it changed), aggregate cells, daily rows."""
        released: list[Release] = []
        policy = await self._policy_release()
        if policy is not None:
            released.append(policy)
        for asset_type in self.policy.aggregate_types():
            for metric in self.policy.metrics(asset_type, "public_aggregate"):
                released.extend(await self._publish_cells(metric))
        for asset_type in self.policy.asset_types():
            released.extend(await self._publish_days(asset_type))
        for release in released:
            hub_metrics.OPEN_DATA_RELEASES.labels(release.kind).inc()
        return released

    # ------------------------------------------------------------------ policy

    async def _policy_release(self) -> Release | None:
        last = await asyncio.to_thread(self.state.last_release, "policy")
        if last is not None and last.policy_version == self.policy.version:
            return None
        described = self.policy.describe()
        release = NewRelease(
            ts_ms=self.clock.now_ms(),
            kind="policy",
            dataset="policy",
            period_start_ms=None,
            period_end_ms=None,
            rows=sum(len(t["metrics"]) for t in described.values()),
            suppressed=0,
            policy_version=self.policy.version,
            sha256=hashlib.sha256(orjson.dumps(described)).hexdigest(),
            detail={"policy": described},
        )
        logged = await asyncio.to_thread(self.state.record, release)
        log.info("open data: policy in effect", version=self.policy.version)
        return logged

    # ------------------------------------------------------------------ cells

    def _start(self, stream: str, step_ms: int, watermark: int | None) -> int:
        if watermark is not None:
            return watermark
        now = self.clock.now_ms()
        return (now - self.settings.backfill_days * DAY_MS) // step_ms * step_ms

    def _wait_ms(self, metric: PublishedMetric) -> int:
        return max(metric.delay_ms, self.settings.settle_s * 1000)

    async def _publish_cells(self, metric: PublishedMetric) -> list[Release]:
        stream = cells_stream(metric)
        bucket = metric.bucket_ms
        start = self._start(stream, bucket, await asyncio.to_thread(self.state.watermark, stream))
        released: list[Release] = []
        while True:
            due = (self.clock.now_ms() - self._wait_ms(metric)) // bucket * bucket
            if start >= due:
                return released
            end = min(due, (start // DAY_MS + 1) * DAY_MS)  # at most to the end of the day
            area = await self.store.area_aggregate(
                AreaQuery(metric.asset_type, [metric.metric], start, end, bucket)
            )
            published = [
                Cell(
                    asset_type=metric.asset_type,
                    metric=metric.metric,
                    district=c.district,
                    bucket_ms=bucket,
                    start_ms=c.bucket_ms,
                    devices=c.devices,
                    readings=c.readings,
                    mean=c.mean,
                )
                for c in sorted(area, key=lambda c: (c.bucket_ms, c.district))
                if c.devices >= metric.k
            ]
            if not area:
                # Nothing reported in the stretch: nothing published, nothing to log.
                await asyncio.to_thread(self.state.advance, stream, end)
                start = end
                continue
            release = NewRelease(
                ts_ms=self.clock.now_ms(),
                kind="aggregates",
                dataset=f"{metric.asset_type}/{metric.metric}",
                period_start_ms=start,
                period_end_ms=end,
                rows=len(published),
                suppressed=len(area) - len(published),
                policy_version=self.policy.version,
                sha256=digest(published),
                detail={"k": metric.k, "bucket_ms": bucket, "delay_ms": metric.delay_ms},
            )
            released.append(
                await asyncio.to_thread(
                    self.state.publish,
                    stream=stream,
                    until_ms=end,
                    release=release,
                    cells=published,
                )
            )
            start = end
            await asyncio.sleep(STEP_PAUSE_S)

    # ------------------------------------------------------------------ days

    async def _publish_days(self, asset_type: str) -> list[Release]:
        metrics = self.policy.metrics(asset_type)
        dataset = daily_dataset(asset_type)
        stream = f"daily/{asset_type}"
        wait = max(self._wait_ms(m) for m in metrics)
        start = self._start(stream, DAY_MS, await asyncio.to_thread(self.state.watermark, stream))
        released: list[Release] = []
        while True:
            due = (self.clock.now_ms() - wait) // DAY_MS * DAY_MS
            if start >= due:
                return released
            end = start + DAY_MS
            rows = await self._device_level_days(asset_type, metrics, start, end)
            rows.extend(await self._aggregate_days(metrics, start, end))
            rows.sort(key=lambda r: (r.day_ms, r.district, r.metric))
            if not rows:
                await asyncio.to_thread(self.state.advance, stream, end)
                start = end
                continue
            release = NewRelease(
                ts_ms=self.clock.now_ms(),
                kind="daily",
                dataset=dataset,
                period_start_ms=start,
                period_end_ms=end,
                rows=len(rows),
                suppressed=0,  # aggregate cells were suppressed (and logged) as published
                policy_version=self.policy.version,
                sha256=digest(rows),
                detail={"metrics": [m.metric for m in metrics]},
            )
            released.append(
                await asyncio.to_thread(
                    self.state.publish, stream=stream, until_ms=end, release=release, daily=rows
                )
            )
            start = end
            await asyncio.sleep(STEP_PAUSE_S)

    async def _device_level_days(
        self, asset_type: str, metrics: Sequence[PublishedMetric], start: int, end: int
    ) -> list[DailyRow]:
        """Daily rows of device-level metrics: fresh figures over the day, min and max too."""
        public = [m.metric for m in metrics if m.tier == "public"]
        if not public:
            return []
        area: list[AreaCell] = await self.store.area_aggregate(
            AreaQuery(asset_type, public, start, end, DAY_MS)
        )
        return [
            DailyRow(
                asset_type=asset_type,
                day_ms=c.bucket_ms,
                district=c.district,
                metric=c.metric,
                tier="public",
                devices=c.devices,
                readings=c.readings,
                mean=c.mean,
                min=c.min,
                max=c.max,
                cells=None,
            )
            for c in area
        ]

    async def _aggregate_days(
        self, metrics: Sequence[PublishedMetric], start: int, end: int
    ) -> list[DailyRow]:
        """Daily rows of aggregate-only metrics, from the day's published cells only."""
        rows: list[DailyRow] = []
        for metric in metrics:
            if metric.tier != "public_aggregate":
                continue
            cells = await asyncio.to_thread(self._day_cells, metric, start, end)
            by_district: dict[str, list[Cell]] = defaultdict(list)
            for cell in cells:
                by_district[cell.district].append(cell)
            for district, found in sorted(by_district.items()):
                readings = sum(c.readings for c in found)
                rows.append(
                    DailyRow(
                        asset_type=metric.asset_type,
                        day_ms=start,
                        district=district,
                        metric=metric.metric,
                        tier="public_aggregate",
                        devices=min(c.devices for c in found),
                        readings=readings,
                        mean=sum(c.mean * c.readings for c in found) / readings,
                        min=None,
                        max=None,
                        cells=len(found),
                    )
                )
        return rows

    def _day_cells(self, metric: PublishedMetric, start: int, end: int) -> list[Cell]:
        return self.state.cells(
            CellQuery(
                asset_type=metric.asset_type,
                metric=metric.metric,
                district=None,
                bucket_ms=metric.bucket_ms,
                min_devices=metric.k,
                first_start_ms=start,
                last_start_ms=end - metric.bucket_ms,
                limit=10_000,
            )
        )
