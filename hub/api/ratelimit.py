"""Request rate limits per client address for the public endpoints (no key to count by).

A token bucket per address: ``per_minute`` requests in a burst, refilled evenly over
the minute, so a 311 app that posts one report now and then never notices it, and a
script posting in a loop gets refused after its burst, told when to come back. The
client address is the one every API route uses (``X-Forwarded-For`` only from
``HUB_API__TRUSTED_PROXIES``: hub.api.auth.client_address), so a client cannot pick
its own. Memory is bounded: the least recently seen addresses are forgotten first,
which only ever gives a forgotten address a fresh bucket.
"""

from __future__ import annotations

import math
from collections import OrderedDict

#: Addresses one limiter remembers.
MAX_TRACKED_ADDRESSES = 50_000


class RateLimiter:
    """Token buckets per client address; time in seconds from a monotonic clock."""

    def __init__(self, per_minute: int, max_addresses: int = MAX_TRACKED_ADDRESSES) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0  # tokens per second
        self._max = max_addresses
        # address -> (tokens left, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, address: str, now: float) -> int | None:
        """Count one request of ``address``: None when allowed, else the seconds to wait."""
        tokens, then = self._buckets.pop(address, (self._capacity, now))
        tokens = min(self._capacity, tokens + max(0.0, now - then) * self._rate)
        if tokens >= 1.0:
            self._buckets[address] = (tokens - 1.0, now)
            allowed = True
        else:
            self._buckets[address] = (tokens, now)
            allowed = False
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if allowed:
            return None
        return max(1, math.ceil((1.0 - tokens) / self._rate))
