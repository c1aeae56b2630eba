"""Cold start: with no saved state, rule windows are rebuilt from stored history, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from rules_helpers import MIN, T0

from hub.clock import FakeClock
from hub.messages import Reading, RuleState
from hub.rules import service as service_mod
from hub.rules.service import RuleService
from hub.settings import RulesSettings

RULES = """\
rules:
  - id: rising
    match: {asset_type: flood_gauge}
    kind: rate_of_change
    metric: water_level_m
    window: 10m
    op: ">="
    value: 0.5
    severity: warning
  - id: high
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 9
    severity: critical
"""


class History:
    """A fake ``store.history``: records its arguments, yields readings, knows if closed."""

    def __init__(self, readings: list[Reading], clock: FakeClock | None = None) -> None:
        self.readings = readings
        self.clock = clock
        self.calls: list[tuple[int, int, list[str] | None]] = []
        self.yielded = 0
        self.closed = False

    def __call__(
        self, start_ms: int, end_ms: int, asset_types: Sequence[str] | None = None
    ) -> AsyncIterator[Reading]:
        self.calls.append((start_ms, end_ms, None if asset_types is None else list(asset_types)))
        return self._gen(start_ms, end_ms)

    async def _gen(self, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        try:
            for r in self.readings:
                if start_ms <= r.ts_ms < end_ms:
                    if self.clock is not None:
                        self.clock.advance(0.015)  # each reading costs 15 ms of "time"
                    self.yielded += 1
                    yield r
        finally:
            self.closed = True


def service(tmp_path: Path, clock: FakeClock, text: str = RULES) -> RuleService:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "r.yaml").write_text(text)
    settings = RulesSettings(paths=[str(rules_dir)], managed_dir=str(tmp_path / "managed"))
    return RuleService(settings, tmp_path / "data", clock=clock, expected_interval_s=lambda _: 60)


def gauge(minute: float, level: float, device: str = "g1") -> Reading:
    return Reading("d01", "flood_gauge", device, T0 + round(minute * MIN), {"water_level_m": level})


async def test_windows_rebuilt_so_the_first_live_reading_decides(tmp_path: Path) -> None:
    """Primed from [now - window, now) of the window rules' asset types; no events while priming."""
    clock = FakeClock(T0 + 9 * MIN)
    svc = service(tmp_path, clock)
    history = History([gauge(m, 1.0 + 0.05 * m) for m in range(9)])
    assert svc.load_state() is None
    assert await svc.cold_start(history) == 9
    assert history.calls == [(T0 - MIN, T0 + 9 * MIN, ["flood_gauge"])]
    assert svc.engine.counts()["rising"] == (0, 0)
    # 1.0 at minute 0 (inside the 10 min window) -> 1.6 now: +0.6 fires at once.
    evs = svc.evaluate(gauge(9, 1.6))
    assert [(e.rule_id, e.state) for e in evs] == [("rising", RuleState.FIRING)]
    assert evs[0].explanation.observed["from"] == 1.0


async def test_without_priming_the_same_reading_only_starts_a_window(tmp_path: Path) -> None:
    """Control: a cold engine cannot decide a rate from one reading."""
    svc = service(tmp_path, FakeClock(T0 + 9 * MIN))
    assert svc.evaluate(gauge(9, 1.6)) == []


async def test_priming_stops_at_the_reading_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most PRIME_MAX_READINGS are used, and the store's cursor is closed at once."""
    monkeypatch.setattr(service_mod, "PRIME_MAX_READINGS", 3)
    clock = FakeClock(T0 + 9 * MIN)
    history = History([gauge(m, 1.0) for m in range(9)])
    assert await service(tmp_path, clock).cold_start(history) == 3
    assert history.closed
    assert history.yielded == 4  # the fourth was read, seen over the cap, and not used


async def test_priming_stops_at_the_time_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PRIME_MAX_S the rest of the history is left unread."""
    monkeypatch.setattr(service_mod, "PRIME_MAX_S", 1.0)
    monkeypatch.setattr(service_mod, "PRIME_YIELD_EVERY", 10)
    clock = FakeClock(T0 + 10 * MIN)
    history = History([gauge(i / 100, 1.0) for i in range(900)], clock)
    used = await service(tmp_path, clock).cold_start(history)
    # 15 ms per reading, checked every 10 readings: the first check past 1 s is at 70.
    assert used == 70
    assert history.closed


async def test_a_failing_store_means_empty_windows_not_a_crash(tmp_path: Path) -> None:
    """cold_start never raises: the live stage goes on with empty windows."""

    def broken(_s: int, _e: int, _t: Sequence[str] | None = None) -> AsyncIterator[Reading]:
        async def gen() -> AsyncIterator[Reading]:
            yield gauge(0, 1.0)
            raise OSError("store gone")

        return gen()

    svc = service(tmp_path, FakeClock(T0))
    assert await svc.cold_start(broken) == 0
    evs = svc.evaluate(gauge(0, 10.0))
    assert [(e.rule_id, e.state) for e in evs] == [("high", RuleState.FIRING)]


async def test_no_window_rules_reads_no_history(tmp_path: Path) -> None:
    """Threshold-only rules need no history: the store is not asked."""
    text = (
        RULES.split("  - id: high", maxsplit=1)[0]
        .replace("rising", "unused")
        .replace("kind: rate_of_change", "enabled: false\n    kind: rate_of_change")
    )
    history = History([gauge(0, 1.0)])
    assert await service(tmp_path, FakeClock(T0), text).cold_start(history) == 0
    assert history.calls == []


async def test_any_asset_window_rule_primes_every_asset_type(tmp_path: Path) -> None:
    """A window rule without a literal asset type needs the history of every type."""
    text = RULES.replace("match: {asset_type: flood_gauge}", "match: {asset_type: 'flood_*'}")
    history = History([])
    await service(tmp_path, FakeClock(T0), text).cold_start(history)
    assert history.calls[0][2] is None
