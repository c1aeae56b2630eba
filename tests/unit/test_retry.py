"""The shared retry policy: capped, jittered exponential backoff, and tenacity's loop."""

from __future__ import annotations

import pytest
from tenacity import RetryCallState

from hub.retry import Backoff, forever


def test_delay_doubles_from_first_and_stops_at_the_cap() -> None:
    """Without jitter the n-th retry waits first * 2**n, never more than max_s."""
    b = Backoff(first_s=0.5, max_s=30.0, jitter=0.0)
    assert [b.delay(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert b.delay(10_000) == 30.0
    assert b.delay(-3) == 0.5


def test_jitter_stays_within_its_band_and_never_above_the_cap() -> None:
    """Each delay is within ±jitter of its base, at most max_s, and not always the same."""
    b = Backoff(first_s=1.0, max_s=300.0, jitter=0.2)
    for n in range(12):
        base = min(300.0, 2.0**n)
        delays = {b.delay(n) for _ in range(200)}
        assert min(delays) >= base * 0.8
        assert max(delays) <= min(300.0, base * 1.2)
        assert len(delays) > 1


def test_bad_policies_are_refused() -> None:
    """A policy that could not back off sensibly is a clear error at construction."""
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first_s=0, max_s=1)
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first_s=2, max_s=1)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(first_s=1, max_s=2, jitter=1.0)


async def test_forever_retries_the_named_failure_until_the_call_succeeds() -> None:
    """The call is tried again after each retryable failure, which before_sleep hears of."""
    calls = 0
    heard: list[str] = []

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError(f"down {calls}")
        return "up"

    def before_sleep(state: RetryCallState) -> None:
        assert state.outcome is not None
        heard.append(str(state.outcome.exception()))

    result = None
    fast = Backoff(first_s=0.001, max_s=0.002)
    async for attempt in forever(fast, retry_on=ConnectionError, before_sleep=before_sleep):
        with attempt:
            result = await flaky()
    assert (result, calls) == ("up", 4)
    assert heard == ["down 1", "down 2", "down 3"]


async def test_forever_lets_other_failures_through_at_once() -> None:
    """A failure that is not the retryable kind is raised on the first attempt."""
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    async def retried() -> None:
        async for attempt in forever(Backoff(0.001, 0.002), retry_on=ConnectionError):
            with attempt:
                await broken()

    with pytest.raises(KeyError):
        await retried()
    assert calls == 1
