"""Time, injected: every timer, `for:` duration, silence and flush reads a Clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of wall-clock time in epoch milliseconds, and of monotonic time."""

    def now_ms(self) -> int:
        """Current wall-clock time, epoch milliseconds."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for measuring durations."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Current wall-clock time, epoch milliseconds."""
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to; for tests and backtests."""

    def __init__(self, start_ms: int = 1_764_000_000_000) -> None:
        self._now_ms = start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        """The fake current time."""
        return self._now_ms

    def monotonic(self) -> float:
        """Fake monotonic seconds, advancing with :meth:`advance`."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now_ms += round(seconds * 1000)
        self._mono += seconds

    def set_ms(self, now_ms: int) -> None:
        """Jump to ``now_ms`` (never backwards)."""
        if now_ms < self._now_ms:
            raise ValueError("a clock does not go backwards")
        self._mono += (now_ms - self._now_ms) / 1000
        self._now_ms = now_ms
