"""What keeps the public endpoints cheap: a rate per client and a gate around store work.

- :class:`hub.api.ratelimit.RateLimiter`: a token bucket per client address
  (``rate_per_s`` on average, ``burst`` at once); an empty bucket answers 429 with
  ``Retry-After``.
- :class:`QueryGate`: every public request that reads the telemetry store or the
  open-data tables runs through it: at most ``max_concurrent`` at a time, each off
  the event loop (the stores run their queries in threads or over HTTP), a turn
  waited for at most ``queue_wait_s`` and a query given at most ``timeout_s``,
  both answered 503 with ``Retry-After``. A query that overran keeps its slot until
  it really ends, so an abandoned query can never let more than ``max_concurrent``
  run at once. Ingest, rules and alerts never wait for a public query: only public
  queries wait for each other.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The gate could not serve the query in time; ``retry_after`` seconds is a fair wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueryGate:
    """Bounded, timed store work for public requests (module docstring)."""

    def __init__(self, max_concurrent: int, queue_wait_s: float, timeout_s: float) -> None:
        self._slots = asyncio.Semaphore(max_concurrent)
        self._queue_wait_s = queue_wait_s
        self._timeout_s = timeout_s

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` in a slot; :class:`Busy` when no slot frees up or it takes too long."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self._queue_wait_s)
        except TimeoutError:
            raise Busy(
                "the open-data service is busy; try again shortly",
                retry_after=max(1, math.ceil(self._queue_wait_s)),
            ) from None
        task = asyncio.ensure_future(work())
        task.add_done_callback(lambda _t: self._slots.release())
        task.add_done_callback(_consume)  # an abandoned query's error is not "unretrieved"
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._timeout_s)
        except TimeoutError:
            raise Busy(
                f"the query took longer than {self._timeout_s:g} s; narrow it "
                "(a shorter phenomenonTime range, a smaller $top)",
                retry_after=max(1, math.ceil(self._timeout_s)),
            ) from None


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned query's outcome so its error is not reported as unhandled."""
    if not task.cancelled():
        task.exception()
