"""The runtime's scheduling policies that are pure functions (the stages themselves
run in tests/integration against a real broker and store)."""

from __future__ import annotations

from hub.runtime import LIVE_BEHIND_BYTES, STORE_YIELD_S, store_batch_age


def test_store_writes_every_flush_interval_while_the_live_stage_keeps_up() -> None:
    assert store_batch_age(0.2, 0) == 0.2
    assert store_batch_age(0.2, LIVE_BEHIND_BYTES) == 0.2


def test_store_holds_its_writes_back_while_the_live_stage_is_behind() -> None:
    """In a storm beyond the hub, fewer and bigger store writes leave the core to the
    alert path (bench/alerts.py: median p50 1.1 s against 2.6 s, p99 5.6 s against
    7.3 s, over 3 runs each); never sooner than the configured interval."""
    assert store_batch_age(0.2, LIVE_BEHIND_BYTES + 1) == STORE_YIELD_S
    assert store_batch_age(STORE_YIELD_S * 2, LIVE_BEHIND_BYTES + 1) == STORE_YIELD_S * 2
