"""Failures inside the hub are never silent: a record it cannot read back is a counted
dead letter, and a stage that dies at run time makes the hub unready and `hub run`
exit non-zero, saying why. Real Mosquitto; the hub in-process or as `hub run`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hub import records, runtime
from hub.clock import SystemClock
from hub.journal import Journal
from hub.messages import Reading
from hub.runtime import Hub
from hub.settings import JournalSettings, Settings
from tests.conftest import Names
from tests.hubproc import REPO, HubProcess, Publisher, env_for
from tests.services import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _metric(hub: HubProcess, sample: str) -> float:
    text = httpx.get(
        f"{hub.url}/metrics", headers={"Authorization": f"Bearer {hub.admin_key}"}, timeout=5
    ).text
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _break_the_rule_state_file(data_dir: Path) -> None:
    """Put a folder where the live stage's checkpoint writes its rule state: the next
    checkpoint fails (as on a disk that refuses the write)."""
    state = data_dir / "rules" / "state.bin"
    state.mkdir(parents=True)
    (state / "in-the-way").write_text("x")


def test_an_undecodable_journal_record_is_a_counted_dead_letter_on_replay(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """A journal holding a record the hub cannot decode, between two good readings: on
    replay the readings are applied and stored, and the bad record is kept as a
    dead letter `bad_record` and counted in hub_rejected_total."""
    device = names.device()
    hub = HubProcess(tmp_path / "hub", env_for(names.topic_prefix(), mosquitto.url))
    now = int(time.time() * 1000)
    first = Reading("d01", "flood_gauge", device, now - 2000, {"water_level_m": 1.0}, seq=1)
    second = Reading("d01", "flood_gauge", device, now - 1000, {"water_level_m": 1.5}, seq=2)

    async def seed() -> None:
        journal = Journal(hub.data_dir / "journal", JournalSettings(), clock=SystemClock())
        async with journal:
            await journal.append([records.encode(first), b"R\x01{broken", records.encode(second)])

    hub.data_dir.mkdir(parents=True)
    asyncio.run(seed())
    try:
        hub.start()
        wait_for(
            lambda: hub.get(f"/api/v1/devices/{device}")["latest"]["water_level_m"] == 1.5,
            timeout=30,
            what="the good readings applied",
        )
        letters = hub.get("/api/v1/dead-letters", reason="bad_record")["items"]
        assert [d["topic"] for d in letters] == ["journal"]
        assert "cannot be decoded" in letters[0]["detail"]
        assert letters[0]["payload"].startswith("R")
        assert _metric(hub, 'hub_rejected_total{reason="bad_record"}') == 1
        assert hub.get(f"/api/v1/devices/{device}")["seq_gaps"] == 0

        def stored() -> int:
            body = hub.get(
                f"/api/v1/devices/{device}/telemetry", metric="water_level_m", start="-1h"
            )
            return len(body["points"])

        wait_for(lambda: stored() == 2, timeout=30, what="both readings stored")
    finally:
        assert hub.stop() == 0, hub.log_tail()


@pytest.fixture
async def hub_in_process(
    mosquitto: Mosquitto, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hub]:
    """A hub in this process (embedded store inline), checkpointing its live stage often."""
    monkeypatch.setattr(runtime, "LIVE_CHECKPOINT_S", 0.2)
    prefix = names.topic_prefix()
    settings = Settings(
        data_dir=tmp_path / "hub",
        mqtt={"url": mosquitto.url, "topic_prefix": prefix, "client_id": f"hub-{prefix}"},
        store={"writer": "inline"},
        rules={"paths": [str(REPO / "rules")], "managed_dir": str(tmp_path / "managed")},
        alerts={"routes_path": str(REPO / "rules" / "routes.yaml")},
        api={"port": 0},
    )
    async with Hub(settings) as hub:
        yield hub


async def _until(condition: object, limit_s: float = 20.0) -> None:
    """Poll ``condition()`` until true, within a deadline."""
    async with asyncio.timeout(limit_s):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 (hub state, no event)
            await asyncio.sleep(0.02)


async def test_a_stage_dying_at_run_time_makes_the_hub_unready(
    hub_in_process: Hub, mosquitto: Mosquitto, names: Names
) -> None:
    """The live stage's checkpoint failing kills that stage: health says not ready (and
    not ok), /api/v1/health answers 503, and serve_forever raises the stage's error."""
    hub = hub_in_process
    device = names.device()
    topic = f"{names.topic_prefix()}/d01/flood_gauge/{device}/telemetry"
    pub = Publisher(mosquitto.url)
    try:
        await _until(lambda: hub.source.connected)
        assert (await hub.health()).ready
        pub.publish(topic, {"metrics": {"water_level_m": 1.0}})
        await _until(lambda: hub.registry.get_device(device) is not None)
        _break_the_rule_state_file(hub.settings.data_dir)
        pub.publish(topic, {"metrics": {"water_level_m": 1.1}})
        await _until(lambda: hub._tasks is not None and hub._tasks.failed)
        report = await hub.health()
        assert (report.ready, report.ok) == (False, False)
        assert report.checks["tasks"] == {"running": False}
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{hub.api_url}/api/v1/health")
        assert answer.status_code == 503
        with pytest.raises(OSError, match=r"state\.bin"):
            await asyncio.wait_for(hub.serve_forever(), 5)
    finally:
        pub.close()


def test_hub_run_exits_non_zero_when_a_stage_dies(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """`hub run` whose live stage dies (its checkpoint cannot be written) stops by
    itself with exit code 1, and its log names the stage and the error."""
    prefix, device = names.topic_prefix(), names.device()
    hub = HubProcess(tmp_path / "hub", env_for(prefix, mosquitto.url))
    pub = Publisher(mosquitto.url)
    topic = f"{prefix}/d01/flood_gauge/{device}/telemetry"
    try:
        hub.start()
        pub.publish(topic, {"metrics": {"water_level_m": 1.0}})
        wait_for(lambda: hub.get(f"/api/v1/devices/{device}"), timeout=30, what="a reading")
        _break_the_rule_state_file(hub.data_dir)
        pub.publish(topic, {"metrics": {"water_level_m": 1.1}})
        pub.wait_all()
        assert hub.proc is not None
        # The live stage checkpoints every 15 s (runtime.LIVE_CHECKPOINT_S).
        code = hub.proc.wait(timeout=runtime.LIVE_CHECKPOINT_S + 45)
        assert code == 1, hub.log_tail()
        log = hub.log_path.read_text(errors="replace")
        assert "stage died" in log
        assert "hub.live" in log
        assert "state.bin" in log
    finally:
        pub.close()
        hub.kill()


def test_a_checkpoint_failing_at_stop_is_logged_and_the_stop_stays_clean(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """The live stage's last checkpoint, written as the hub stops, failing: the log says
    so (and that the next start replays the journal), not that a stage died; the hub
    still exits 0."""
    prefix, device = names.topic_prefix(), names.device()
    hub = HubProcess(tmp_path / "hub", env_for(prefix, mosquitto.url))
    pub = Publisher(mosquitto.url)
    try:
        hub.start()
        pub.publish(
            f"{prefix}/d01/flood_gauge/{device}/telemetry", {"metrics": {"water_level_m": 2.0}}
        )
        wait_for(lambda: hub.get(f"/api/v1/devices/{device}"), timeout=30, what="a reading")
        _break_the_rule_state_file(hub.data_dir)
        assert hub.stop() == 0, hub.log_tail()
        log = hub.log_path.read_text(errors="replace")
        assert "live checkpoint failed; the next start replays the journal" in log
        assert "stage died" not in log
    finally:
        pub.close()
        hub.kill()
