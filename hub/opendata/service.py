"""The open-data service: what the public endpoints, the publisher and operators share.

Built once by the runtime (``OpenData(...)``), handed to the API in its context;
``publisher.run()`` is one of the hub's named tasks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hub.api.ratelimit import RateLimiter
from hub.catalog import Catalog
from hub.clock import Clock
from hub.logging import get_logger
from hub.opendata.index import (
    INDEX_MAX_AGE_S,
    INDEX_TTL_S,
    Index,
    build_index,
    fingerprint,
    public_devices,
)
from hub.opendata.limits import QueryGate
from hub.opendata.observations import ObservationSource
from hub.opendata.policy import OpenDataPolicy
from hub.opendata.publisher import Publisher
from hub.opendata.state import OpenDataState, Release
from hub.ports import DeviceRegistryPort
from hub.settings import OpenDataSettings
from hub.store.base import TelemetryStore

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Download:
    """A rendered bulk file, kept until its dataset gets a new release or the policy changes."""

    key: tuple[str, int, str]
    body: bytes
    etag: str


class OpenData:
    """Policy, entity index, store access, limits and publisher of the open-data tier."""

    def __init__(
        self,
        settings: OpenDataSettings,
        catalog: Catalog,
        registry: DeviceRegistryPort,
        store: TelemetryStore,
        state: OpenDataState,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.policy = OpenDataPolicy(catalog)
        self.registry = registry
        self.store = store
        self.state = state
        self.clock = clock
        self.gate = QueryGate(
            settings.max_concurrent_queries, settings.queue_wait_s, settings.query_timeout_s
        )
        self.limiter = RateLimiter(settings.rate_per_s, settings.burst)
        self.observations = ObservationSource(store, state, clock)
        self.publisher = Publisher(self.policy, store, state, clock, settings)
        self.downloads: dict[str, Download] = {}
        #: The last catalog.json built: (index, newest release, origin) and the document.
        self.catalog_cache: tuple[tuple[float, int, str], dict[str, Any]] | None = None
        self._index: Index | None = None
        self._index_lock = asyncio.Lock()
        self._rebuilding: asyncio.Task[None] | None = None
        self._checked = 0.0

    async def index(self) -> Index:
        """The entity index; older than ``INDEX_TTL_S``, it is rebuilt in the background
        and this request (and those until it is done) uses the previous one."""
        current = self._index
        now = self.clock.monotonic()
        if current is None:
            async with self._index_lock:
                if self._index is None:
                    self._index = await self._build(now)
                self._checked = now
                return self._index
        if now - self._checked < INDEX_TTL_S:
            return current
        self._checked = now
        stale = now - current.built_at >= INDEX_MAX_AGE_S
        if (stale or fingerprint(self.policy, self.registry) != current.fingerprint) and (
            self._rebuilding is None or self._rebuilding.done()
        ):
            self._rebuilding = asyncio.create_task(self._refresh(now), name="hub.opendata.index")
        return current

    async def _build(self, now: float) -> Index:
        # The registry on the loop (it is the live stage's, not safe to walk from a
        # thread); the entities from that copy in a thread (a city's worth of objects
        # must not stall ingest).
        seen = fingerprint(self.policy, self.registry)
        devices = public_devices(self.policy, self.registry)
        return await asyncio.to_thread(build_index, self.policy, devices, now, seen)

    async def _refresh(self, now: float) -> None:
        try:
            self._index = await self._build(now)
        except Exception:
            log.exception("open data: rebuilding the entity index failed; keeping the old one")

    async def releases(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Release]:
        """The release log, newest first (operators, the audit report)."""
        return await asyncio.to_thread(
            self.state.releases,
            since_ms=since_ms,
            until_ms=until_ms,
            kind=kind,
            before_id=before_id,
            limit=limit,
        )
