"""Retry and backoff: the one policy for every loop of the hub that waits and tries again.

Used by the MQTT ingest session (reconnect), the store sink and the store opening
(an InfluxDB outage), the store writer process (restart after a crash) and the
alert outbox (a receiver that failed). One policy, so that they all behave and are
documented alike:

    delay(n) = min(max_s, first_s * 2**n) * uniform(1 - jitter, 1 + jitter), at most max_s

for the n-th retry (n = 0 for the first). Capped, so that an outage is noticed to be
over within ``max_s``; exponential, so that a long outage costs few attempts;
jittered, so that many clients that lost the same server (devices, hubs, queued
notifications) do not come back in one burst. At the cap the jitter only shortens.

Retrying a call is tenacity's job (``AsyncRetrying``): :class:`Backoff` is a
tenacity wait strategy, and :func:`forever` builds the retrying loop the hub uses
for outages, which ends only when the call succeeds or the task is cancelled.
Loops that are not a call to retry (a reconnecting session, a child process to
restart) take :meth:`Backoff.delay` directly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never

__all__ = ["Backoff", "forever"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped, jittered exponential backoff (see the module docstring)."""

    first_s: float
    max_s: float
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.max_s < self.first_s:
            raise ValueError(f"backoff needs 0 < first_s <= max_s, got {self}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first)."""
        base = min(self.max_s, math.ldexp(self.first_s, min(max(0, retry), 62)))
        spread = random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 (jitter, not cryptography)
        return min(self.max_s, base * spread)

    def __call__(self, retry_state: RetryCallState) -> float:
        """The tenacity wait strategy: the delay after attempt ``attempt_number``."""
        return self.delay(retry_state.attempt_number - 1)


def forever(
    backoff: Backoff,
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """Retry while the call raises ``retry_on``, waiting ``backoff`` between attempts,
    until it succeeds or the task is cancelled; anything else raised goes through.

    ``async for attempt in forever(...): with attempt: await call()``;
    ``before_sleep`` hears of each failure before its wait.
    """
    return AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=backoff,
        stop=stop_never,
        before_sleep=before_sleep,
        reraise=True,
    )
