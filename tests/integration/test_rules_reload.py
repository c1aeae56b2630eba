"""Hot reload of rule files by a RuleService with a real file watcher (watchfiles).

No sleeps as synchronisation: every wait is a condition polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hub import metrics
from hub.clock import FakeClock
from hub.messages import Reading, RuleState
from hub.rules.service import RuleService
from hub.settings import RulesSettings

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000
RULES = """\
rules:
  - id: high
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
"""


async def poll(cond: Callable[[], object], within: float) -> bool:
    """Poll ``cond()`` until truthy (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def until(cond: Callable[[], object], what: str) -> None:
    """Wait for ``cond()`` with a 15 s deadline; fail the test naming ``what``."""
    if not await poll(cond, 15.0):
        pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[RuleService, Path]]:
    """A service watching a temp rules folder, with its watcher proven live."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "flood.yaml").write_text(RULES)
    settings = RulesSettings(paths=[str(rules_dir)], managed_dir=str(rules_dir / "managed"))
    svc = RuleService(
        settings, tmp_path / "data", clock=FakeClock(), expected_interval_s=lambda _: 60
    )
    task = asyncio.create_task(svc.watch())
    # The watcher starts asynchronously: poke a scratch file until a reload is seen.
    probe = rules_dir / "probe.yaml"
    n = svc.reloads
    for i in range(15):
        probe.write_text(f"rules: []  # {i}\n")
        if await poll(lambda: svc.reloads > n, 1.0):
            break
    else:
        pytest.fail("rule watcher never reacted")
    probe.unlink()
    await until(lambda: svc.reloads > n + 1, "probe removal seen")
    try:
        yield svc, rules_dir
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        svc.close()


def fires(svc: RuleService, level: float, at_s: int) -> bool:
    r = Reading("d01", "flood_gauge", f"g{at_s}", T0 + at_s * 1000, {"water_level_m": level})
    return any(e.state is RuleState.FIRING for e in svc.evaluate(r))


async def test_valid_edit_applies_without_restart(watched: tuple[RuleService, Path]) -> None:
    """Raising the threshold in the file takes effect: 4.0 no longer fires."""
    svc, rules_dir = watched
    assert fires(svc, 4.0, 1)
    before = svc.get_rule("high")
    assert before is not None
    (rules_dir / "flood.yaml").write_text(RULES.replace("value: 3.0", "value: 5.0"))
    await until(lambda: svc.get_rule("high").version != before.version, "new version")  # type: ignore[union-attr]
    assert not fires(svc, 4.0, 2)
    assert fires(svc, 5.5, 3)


async def test_broken_edit_keeps_old_rules_and_is_reported(
    watched: tuple[RuleService, Path],
) -> None:
    """A broken edit is reported (problems, metric) while the previous rules keep running."""
    svc, rules_dir = watched
    path = rules_dir / "flood.yaml"
    path.write_text(RULES.replace("value: 3.0", "value: three"))
    await until(svc.problems, "problem reported")
    assert [str(p) for p in svc.problems()] == [
        f"{path}:6: rules[0].value: Input should be a valid number, unable to parse string"
        " as a number"
    ]
    assert metrics.RULE_LOAD_ERRORS._value.get() == 1
    assert fires(svc, 4.0, 1)  # the old rule still runs
    path.write_text(RULES.replace("value: 3.0", "value: 3.5"))
    await until(lambda: not svc.problems(), "problem cleared")
    assert metrics.RULE_LOAD_ERRORS._value.get() == 0
    assert not fires(svc, 3.2, 2)


async def test_new_and_deleted_files(watched: tuple[RuleService, Path]) -> None:
    """A new rule file adds its rules; deleting it removes them."""
    svc, rules_dir = watched
    extra = rules_dir / "gas.yaml"
    extra.write_text(
        RULES.replace("id: high", "id: gas").replace("water_level_m", "methane_pct_lel")
    )
    await until(lambda: svc.get_rule("gas") is not None, "new rule")
    assert svc.problems() == []
    extra.unlink()
    await until(lambda: svc.get_rule("gas") is None, "rule removed")
    assert svc.get_rule("high") is not None, "the other file's rules stay"
