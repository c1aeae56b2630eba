"""Request rate limits per client address for the public endpoints (no key to count by).

A token bucket per address: ``burst`` requests at once, refilled at ``rate_per_s``,
so a 311 app that posts one report now and then, or a portal reading a dataset,
never notices it, and a script in a loop gets refused after its burst (429), told
when to come back (``Retry-After``). The client address is the one every API route
uses (``X-Forwarded-For`` only from ``HUB_API__TRUSTED_PROXIES``:
hub.api.auth.client_address), so a client cannot pick its own. Memory is bounded:
the least recently seen addresses are forgotten first, which only ever gives a
forgotten address a fresh bucket. Used by Open311 (hub.api.routes.open311) and the
open-data tier (hub.opendata).
"""

from __future__ import annotations

import math
from collections import OrderedDict

#: Addresses one limiter remembers.
MAX_TRACKED_ADDRESSES = 50_000


class RateLimiter:
    """Token buckets per client address; time in seconds from a monotonic clock."""

    def __init__(
        self, rate_per_s: float, burst: int, max_addresses: int = MAX_TRACKED_ADDRESSES
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max = max_addresses
        # address -> (tokens left, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @classmethod
    def per_minute(cls, requests: int) -> RateLimiter:
        """``requests`` a minute, all of them at once if the client likes."""
        return cls(requests / 60.0, requests)

    def take(self, address: str, now: float) -> int | None:
        """Count one request of ``address`` at monotonic ``now``: None when allowed, else
        the seconds to wait."""
        tokens, then = self._buckets.pop(address, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - then) * self._rate)
        wait = None
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = max(1, math.ceil((1.0 - tokens) / self._rate))
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait
