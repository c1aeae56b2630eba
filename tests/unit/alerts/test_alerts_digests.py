"""Digest receivers (people) get one notification per incident per group_wait /
group_interval, Alertmanager style; MQTT-like receivers still get one per alert."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from hub.alerts import manager as manager_module
from hub.alerts import notify_log
from hub.messages import Notification, RuleEvent, RuleState
from hub.notifiers.base import render_text
from hub.ports import DeliveryError
from tests.unit.alerts.conftest import Harness, Recorder

Ev = Callable[..., RuleEvent]

ROUTES = """
receivers: [{name: sirens, mqtt: {}}, {name: team, log: {}}]
route:
  repeat_interval: 4h
  routes:
    - {receivers: [sirens], group_wait: 0s, continue: true}
    - {receivers: [team], group_wait: 30s, group_interval: 5m}
"""


class DigestRecorder(Recorder):
    """A recording receiver read by people: the outbox sends it digests."""

    digest = True

    def counts(self) -> list[int]:
        """Notifications per message received (1 for a single notification)."""
        return [int(n.payload.get("count", 1)) for n in self.got]  # type: ignore[call-overload]


@pytest.fixture
def digest_harness(
    harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> Harness:
    """BASIC harness with ``team`` as a digest receiver; the worker scans without pausing."""
    monkeypatch.setattr(manager_module, "DIGEST_SCAN_S", 0)
    harness = harness_factory(ROUTES)
    harness.receivers["team"] = DigestRecorder()
    harness.new_manager()
    return harness


def _team(h: Harness) -> DigestRecorder:
    team = h.receivers["team"]
    assert isinstance(team, DigestRecorder)
    return team


async def _deliver(h: Harness) -> None:
    """Run the workers until nothing is due or ready to go (digests held back stay)."""
    conn = h.conns[-1]
    task = asyncio.create_task(h.manager.run())

    def quiet() -> bool:
        now = h.clock.now_ms()
        sent = h.manager._digest_sent.get("team", {})
        ready, _ = notify_log.digest_groups(conn, "team", now, sent)
        (due,) = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE receiver != 'team' AND next_attempt_ms <= ?",
            (now,),
        ).fetchone()
        return not ready and due == 0

    try:
        async with asyncio.timeout(5):
            while not quiet():  # noqa: ASYNC110  (outbox state in SQLite)
                await asyncio.sleep(0.002)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _advance(h: Harness, seconds: float) -> None:
    h.clock.advance(seconds)
    await h.manager.tick()
    await _deliver(h)


async def test_storm_sends_one_digest_per_incident_after_group_wait(
    digest_harness: Harness, ev: Ev
) -> None:
    """15 alerts in two incidents over 20 s: sirens get 15 events, the team 2 digests at 30 s."""
    h = digest_harness
    for i in range(10):
        await h.manager.handle([ev(source=f"wm-{i}", district="d01")])
        if i < 5:
            await h.manager.handle([ev(source=f"wm-{i}", district="d02")])
        await _advance(h, 2)
    assert len(h.receivers["sirens"].got) == 15
    assert _team(h).got == []
    await _advance(h, 9)  # 29 s after the first alert
    assert _team(h).got == []
    await _advance(h, 2)
    team = _team(h)
    assert sorted(team.counts()) == [5, 10]
    digests = {str(n.payload["incident"]["labels"]["district"]): n for n in team.got}  # type: ignore[index]
    inner = digests["d01"].payload["notifications"]
    assert sorted(n["alert"]["source"] for n in inner) == [f"wm-{i}" for i in range(10)]  # type: ignore[index, union-attr]
    assert {n["kind"] for n in inner} == {"firing"}  # type: ignore[index, union-attr]


async def test_later_news_of_an_incident_waits_for_group_interval(
    digest_harness: Harness, ev: Ev
) -> None:
    """After a digest, a new alert and resolutions of that incident go out together 5 min later."""
    h = digest_harness
    await h.manager.handle([ev(source=f"wm-{i}") for i in range(3)])
    await _advance(h, 31)
    team = _team(h)
    assert team.counts() == [3]
    await _advance(h, 9)  # 40 s: a fourth alert joins the incident
    await h.manager.handle([ev(source="wm-9")])
    await _advance(h, 60)
    assert team.counts() == [3]
    await h.manager.handle(
        [ev(RuleState.RESOLVED, source="wm-0"), ev(RuleState.RESOLVED, source="wm-1")]
    )
    await _advance(h, 230)  # 330 s: 4m59s after the first digest
    assert team.counts() == [3]
    await _advance(h, 2)
    assert team.counts() == [3, 3]
    kinds = [(n["kind"], n["alert"]["source"]) for n in team.got[1].payload["notifications"]]  # type: ignore[index, union-attr]
    assert kinds == [("firing", "wm-9"), ("resolved", "wm-0"), ("resolved", "wm-1")]


async def test_digest_is_logged_per_notification_and_not_resent_after_restart(
    digest_harness: Harness, ev: Ev
) -> None:
    """Each notification of a digest is in the log by its own id; a restart re-sends none."""
    h = digest_harness
    await h.manager.handle([ev(source=f"wm-{i}") for i in range(4)])
    await _advance(h, 31)
    team = _team(h)
    assert team.counts() == [4]
    inner_ids = {n["notification_id"] for n in team.got[0].payload["notifications"]}  # type: ignore[index, union-attr]
    logged = {
        r[0]
        for r in h.conns[-1].execute(
            "SELECT notification_id FROM notify_log WHERE receiver = 'team' AND outcome = 'sent'"
        )
    }
    assert logged == inner_ids
    await h.manager.close()
    h.new_manager()
    await _advance(h, 600)
    assert team.counts() == [4]


def test_digest_text_names_the_incident_and_lists_alerts() -> None:
    """A person's digest: worst severity, count, the incident, one line per alert (capped)."""
    inner = [
        {
            "notification_id": f"n{i}",
            "kind": "firing",
            "alert": {
                "severity": "emergency" if i == 3 else "warning",
                "rule_id": "pressure-low",
                "district": "d07",
                "source": f"wm-{i}",
                "summary": "pressure 1.1 bar",
            },
        }
        for i in range(25)
    ]
    title, body = render_text(
        Notification(
            notification_id="digest-1",
            receiver="team",
            alert_id="a",
            payload={
                "kind": "digest",
                "count": 25,
                "incident": {
                    "id": "inc-1",
                    "labels": {"district": "d07", "asset_type": "water_main"},
                    "alerts": 25,
                    "open_alerts": 25,
                },
                "notifications": inner,
            },
            created_ms=0,
        )
    )
    assert title == "[EMERGENCY] 25 alert notifications: incident d07, water_main"
    assert "inc-1" in body
    assert "wm-3" in body
    assert "... and 5 more" in body
    assert "wm-24" not in body


async def test_digest_receiver_down_across_a_restart_gets_each_notification_once(
    digest_harness: Harness, ev: Ev
) -> None:
    """A digest that failed waits in the outbox through a restart and arrives once, whole."""
    h = digest_harness
    team = _team(h)
    team.fail = DeliveryError("503", retryable=True)
    await h.manager.handle([ev(source=f"wm-{i}") for i in range(3)])
    await _advance(h, 31)
    assert team.attempts == 1
    assert team.got == []
    await h.manager.close()
    h.new_manager()
    team.fail = None
    await _advance(h, 2)  # past the first backoff (1 s +- 20 %)
    assert team.counts() == [3]
    await _advance(h, 600)
    assert team.counts() == [3]
    inner = [n["notification_id"] for n in team.got[0].payload["notifications"]]  # type: ignore[index, union-attr]
    assert len(set(inner)) == 3


async def test_digest_worker_yields_between_incidents(digest_harness: Harness, ev: Ev) -> None:
    """Many incidents due at once: other work runs between their digests."""
    h = digest_harness
    await h.manager.handle([ev(source=f"wm-{i}", district=f"d{i:02d}") for i in range(30)])
    await _advance(h, 31)
    team = _team(h)
    assert team.counts() == [1] * 30
    turns: list[int] = []

    async def other_work() -> None:
        while True:
            turns.append(len(team.got))
            await asyncio.sleep(0)

    await h.manager.handle([ev(source=f"wm-{i}b", district=f"d{i:02d}") for i in range(30)])
    other = asyncio.create_task(other_work())
    await _advance(h, 301)  # past group_interval (5m) since the first digests
    other.cancel()
    assert team.counts() == [1] * 60
    # other work ran while the 30 digests went out, not only before and after
    assert len({n for n in turns if 30 < n < 60}) >= 10
