"""The open-data service: what the public endpoints, the publisher and operators share.

Built once by the runtime (``OpenData(...)``), handed to the API in its context;
``publisher.run()`` is one of the hub's named tasks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hub.catalog import Catalog
from hub.clock import Clock
from hub.opendata.index import INDEX_TTL_S, Index, build_index
from hub.opendata.limits import QueryGate, RateLimiter
from hub.opendata.observations import ObservationSource
from hub.opendata.policy import OpenDataPolicy
from hub.opendata.publisher import Publisher
from hub.opendata.state import OpenDataState, Release
from hub.ports import DeviceRegistryPort
from hub.settings import OpenDataSettings
from hub.store.base import TelemetryStore


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
        self._index: Index | None = None
        self._index_lock = asyncio.Lock()

    async def index(self) -> Index:
        """The entity index, built again when older than ``INDEX_TTL_S``."""
        now = self.clock.monotonic()
        current = self._index
        if current is not None and now - current.built_at < INDEX_TTL_S:
            return current
        async with self._index_lock:
            current = self._index
            if current is None or now - current.built_at >= INDEX_TTL_S:
                # On the loop: the registry is the live stage's, not safe to walk from a thread.
                current = self._index = build_index(self.policy, self.registry, now)
        return current

    def forget_index(self) -> None:
        """Build the index afresh on the next request (tests, provisioning)."""
        self._index = None

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
