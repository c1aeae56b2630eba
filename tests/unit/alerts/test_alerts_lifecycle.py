"""Alert lifecycle, dedup, escalation, silences, inhibition, flapping and restarts (fake clock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hub.messages import AlertStatus, RuleEvent, RuleState, Severity
from hub.ports import UNRESTRICTED, AlertFilter, Conflict, DeliveryError, NotFound, Scope

Ev = Callable[..., RuleEvent]


async def test_firing_opens_one_alert_and_notifies_at_once(harness, ev: Ev) -> None:
    """A firing rule opens one alert, records its transition and notifies the root route."""
    await harness.manager.handle([ev()])
    await harness.deliver()
    alerts = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)
    assert len(alerts) == 1
    assert alerts[0].status == "firing"
    assert alerts[0].severity == "critical"
    assert harness.receivers["ops"].kinds() == ["firing"]
    assert harness.receivers["team"].got == []  # group_wait 30 s not over yet
    assert [e.status for e in harness.events] == [AlertStatus.FIRING]
    assert [t.status for t in harness.manager.timeline(alerts[0].id)][:2] == ["firing", "notified"]


async def test_repeated_firing_sends_once_within_repeat_interval(harness, ev: Ev) -> None:
    """The same series firing again updates its alert and does not notify again."""
    await harness.manager.handle([ev()])
    await harness.deliver()
    for _ in range(3):
        await harness.advance(60)
        await harness.manager.handle([ev(severity=Severity.CRITICAL)])
    await harness.deliver()
    alerts = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)
    assert len(alerts) == 1
    assert harness.receivers["ops"].kinds() == ["firing"]
    assert "updated" in [t.status for t in harness.manager.timeline(alerts[0].id)]


async def test_firing_twice_in_one_batch_notifies_and_records_once(harness, ev: Ev) -> None:
    """Two firing events of one series in the same batch: one alert, one notification,
    one "notified" step in its timeline (each due step is looked at once)."""
    await harness.manager.handle([ev(), ev()])
    await harness.deliver()
    alerts = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)
    assert len(alerts) == 1
    assert harness.receivers["ops"].kinds() == ["firing"]
    steps = [t.status for t in harness.manager.timeline(alerts[0].id)]
    assert steps == ["firing", "updated", "notified"]


async def test_repeat_after_repeat_interval(harness, ev: Ev) -> None:
    """An unacknowledged alert is sent again once repeat_interval has passed."""
    await harness.manager.handle([ev(asset_type="bridge")])
    await harness.deliver()
    await harness.advance(3599)
    assert harness.receivers["ops"].kinds() == ["firing"]
    await harness.advance(2)
    assert harness.receivers["ops"].kinds() == ["firing", "repeat"]


async def test_group_wait_delays_and_resolved_inside_it_sends_nothing(harness, ev: Ev) -> None:
    """group_wait delays a route's first notification; an alert gone before then is not sent."""
    await harness.manager.handle([ev(source="wm-1"), ev(source="wm-2")])
    await harness.advance(10)
    await harness.manager.handle([ev(RuleState.RESOLVED, source="wm-2")])
    await harness.advance(25)
    team = harness.receivers["team"]
    assert [n.payload["alert"]["source"] for n in team.got] == ["wm-1"]  # type: ignore[index]
    assert team.kinds() == ["firing"]


async def test_alert_fired_and_cleared_in_one_batch_is_notified_firing_then_resolved(
    harness, ev: Ev
) -> None:
    """A one-reading spike (firing and resolved in the same batch) still reaches every
    route whose group_wait is 0, firing then resolved; a route still in its group_wait
    hears nothing, and the timeline shows the notification before the resolution."""
    await harness.manager.handle([ev(), ev(RuleState.RESOLVED)])
    await harness.deliver()
    assert harness.receivers["ops"].kinds() == ["firing", "resolved"]
    assert harness.receivers["team"].got == []  # group_wait 30 s
    alert = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    assert alert.status == "resolved"
    steps = [t.status for t in harness.manager.timeline(alert.id)]
    assert steps == ["firing", "notified", "resolved"]
    await harness.advance(60)
    assert harness.receivers["team"].got == []


async def test_alert_cleared_after_its_group_wait_before_a_tick_is_notified(
    harness, ev: Ev
) -> None:
    """A route whose group_wait has passed but whose step no tick has processed yet is
    notified when the alert resolves, before the resolution."""
    await harness.manager.handle([ev()])
    await harness.deliver()
    harness.clock.advance(31)  # team's group_wait (30 s) is over; no tick ran
    await harness.manager.handle([ev(RuleState.RESOLVED)])
    await harness.deliver()
    assert harness.receivers["team"].kinds() == ["firing", "resolved"]
    assert harness.receivers["ops"].kinds() == ["firing", "resolved"]


async def test_silenced_spike_in_one_batch_stays_silent(harness, ev: Ev) -> None:
    """A spike inside a silence is recorded but notified to nobody."""
    now = harness.clock.now_ms()
    harness.manager.create_silence({"source": "wm-1"}, now, now + 3_600_000, "ops", "works")
    await harness.manager.handle([ev(), ev(RuleState.RESOLVED)])
    await harness.deliver()
    assert harness.receivers["ops"].got == []
    assert harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0].status == "resolved"


async def test_rule_clear_resolves_and_refire_opens_new_alert(harness, ev: Ev) -> None:
    """RESOLVED resolves the alert (notified); a new firing opens a new alert that references it."""
    await harness.manager.handle([ev()])
    await harness.deliver()
    first = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    await harness.advance(60)
    await harness.manager.handle([ev(RuleState.RESOLVED)])
    await harness.deliver()
    assert harness.manager.get_alert(first.id).status == "resolved"  # type: ignore[union-attr]
    assert harness.receivers["ops"].kinds() == ["firing", "resolved"]
    await harness.advance(60)
    await harness.manager.handle([ev()])
    await harness.deliver()
    alerts = harness.manager.list_alerts(AlertFilter(state="active"), UNRESTRICTED)
    assert len(alerts) == 1
    assert alerts[0].id != first.id
    assert alerts[0].reopened_from == first.id


async def test_resolved_for_unknown_series_is_ignored(harness, ev: Ev) -> None:
    """A RESOLVED without an open alert changes nothing and raises nothing."""
    await harness.manager.handle([ev(RuleState.RESOLVED), ev(RuleState.PENDING)])
    assert harness.manager.list_alerts(AlertFilter(), UNRESTRICTED) == []


async def test_escalation_after_delay_without_ack(harness, ev: Ev) -> None:
    """Escalation steps notify their receivers after their delay, once each."""
    await harness.manager.handle([ev()])
    await harness.advance(30)
    assert harness.receivers["team"].kinds() == ["firing"]
    await harness.advance(9 * 60)  # 9m30s after start
    assert harness.receivers["boss"].got == []
    await harness.advance(31)
    assert harness.receivers["boss"].kinds() == ["escalation"]
    await harness.advance(20 * 60)
    assert harness.receivers["chief"].kinds() == ["escalation"]
    assert harness.receivers["boss"].kinds() == ["escalation"]
    alert = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    steps = [t for t in harness.manager.timeline(alert.id) if t.status == "escalated"]
    assert [t.detail["step"] for t in steps] == [1, 2]
    # the live stream saw the opening and both escalations
    assert [e.comment.startswith("not acknowledged") for e in harness.events] == [
        False,
        True,
        True,
    ]


async def test_ack_stops_escalation_and_tells_notified_receivers(harness, ev: Ev) -> None:
    """After an acknowledgement no escalation fires; receivers already told hear of the ack."""
    await harness.manager.handle([ev()])
    await harness.advance(30)
    alert = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    acked = await harness.manager.acknowledge(alert.id, "alice", "on my way")
    assert acked.status == "acknowledged"
    await harness.deliver()
    await harness.advance(3 * 3600)
    assert harness.receivers["boss"].got == []
    assert harness.receivers["chief"].got == []
    assert harness.receivers["team"].kinds() == ["firing", "acknowledged"]
    ack = next(t for t in harness.manager.timeline(alert.id) if t.status == "acknowledged")
    assert (ack.actor, ack.comment) == ("alice", "on my way")
    with pytest.raises(Conflict):
        await harness.manager.acknowledge(alert.id, "bob", "")
    with pytest.raises(NotFound):
        await harness.manager.acknowledge("nope", "bob", "")


async def test_manual_resolve_and_comment(harness, ev: Ev) -> None:
    """Operators can comment and resolve; resolving twice is a conflict."""
    await harness.manager.handle([ev()])
    alert = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    await harness.manager.comment(alert.id, "alice", "crew dispatched")
    done = await harness.manager.resolve(alert.id, "alice", "valve replaced")
    assert done.status == "resolved"
    assert done.resolved_ms == harness.clock.now_ms()
    with pytest.raises(Conflict):
        await harness.manager.resolve(alert.id, "alice", "")
    statuses = [t.status for t in harness.manager.timeline(alert.id)]
    assert "commented" in statuses
    assert statuses[-1] == "resolved"
    # the rule clearing later does not touch the resolved alert
    await harness.manager.handle([ev(RuleState.RESOLVED)])
    assert len(harness.manager.timeline(alert.id)) == len(statuses)


async def test_resolve_by_hand_while_the_condition_holds_brings_the_alert_back(
    harness, ev: Ev
) -> None:
    """Resolving by hand tells the rule engine (rearm); when the condition still held the
    timeline says so, and the rule's next firing opens a new alert that is notified again."""
    asked: list[tuple[str, str, str]] = []

    def rearm(rule_id: str, district: str, source: str) -> bool:
        asked.append((rule_id, district, source))
        return True

    harness.manager.rearm = rearm
    await harness.manager.handle([ev()])
    await harness.deliver()
    first = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    await harness.manager.resolve(first.id, "alice", "looks fine from here")
    assert asked == [("pressure-low", "d01", "wm-1")]
    resolved = harness.manager.timeline(first.id)[-1]
    assert (resolved.status, resolved.actor) == ("resolved", "alice")
    assert resolved.detail["condition_holds"] is True
    assert harness.manager.resolved_by_hand("pressure-low", "d01", "wm-1")
    await harness.advance(60)
    await harness.manager.handle([ev()])  # the engine fires again: the condition holds
    await harness.deliver()
    (again,) = harness.manager.list_alerts(AlertFilter(state="active"), UNRESTRICTED)
    assert again.id != first.id
    assert again.reopened_from == first.id
    assert harness.receivers["ops"].kinds() == ["firing", "resolved", "firing"]
    assert not harness.manager.resolved_by_hand("pressure-low", "d01", "wm-1")


async def test_resolved_by_hand_only_for_an_operators_resolution(harness, ev: Ev) -> None:
    """resolved_by_hand: False for a series never alerted, one still open, or one its
    rule resolved; True once an operator resolved its newest alert."""
    assert not harness.manager.resolved_by_hand("pressure-low", "d01", "wm-1")
    await harness.manager.handle([ev()])
    assert not harness.manager.resolved_by_hand("pressure-low", "d01", "wm-1")
    await harness.manager.handle([ev(RuleState.RESOLVED)])
    assert not harness.manager.resolved_by_hand("pressure-low", "d01", "wm-1")
    await harness.advance(60)
    await harness.manager.handle([ev()])
    alert = harness.manager.list_alerts(AlertFilter(state="active"), UNRESTRICTED)[0]
    await harness.manager.resolve(alert.id, "rule", "an operator whose key is named rule")
    assert harness.manager.resolved_by_hand("pressure-low", "d01", "wm-1")
    last = harness.manager.timeline(alert.id)[-1]
    # no engine attached: nothing known to hold; no reason given: "other"
    assert last.detail == {"by_hand": True, "reason": "other"}


async def test_silence_suppresses_notifications_but_keeps_the_record(harness, ev: Ev) -> None:
    """A silenced alert is recorded and listed as silenced, notified only once the silence ends."""
    now = harness.clock.now_ms()
    silence = harness.manager.create_silence(
        {"district": "d07", "asset_type": "water_main"}, now, now + 3 * 3_600_000, "ops", "works"
    )
    await harness.manager.handle([ev(district="d07"), ev(district="d01", source="wm-9")])
    await harness.deliver()
    silenced = harness.manager.list_alerts(AlertFilter(district="d07"), UNRESTRICTED)
    assert len(silenced) == 1
    assert silenced[0].silenced
    assert [n.payload["alert"]["district"] for n in harness.receivers["ops"].got] == ["d01"]  # type: ignore[index]
    assert [s.id for s in harness.manager.list_silences(False)] == [silence.id]
    await harness.advance(3 * 3600 + 1)
    assert harness.manager.list_silences(False) == []
    assert [s.id for s in harness.manager.list_silences(True)] == [silence.id]
    got = [n.payload["alert"]["district"] for n in harness.receivers["ops"].got]  # type: ignore[index]
    assert got.count("d07") == 1


async def test_expire_silence_ends_it_now(harness, ev: Ev) -> None:
    """Expiring a silence lets its alerts be notified at the next tick."""
    now = harness.clock.now_ms()
    s = harness.manager.create_silence({"source": "wm-*"}, now, now + 3_600_000, "ops", "")
    await harness.manager.handle([ev()])
    await harness.deliver()
    assert harness.receivers["ops"].got == []
    harness.manager.expire_silence(s.id, "ops")
    await harness.advance(1)
    assert harness.receivers["ops"].kinds() == ["firing"]
    with pytest.raises(NotFound):
        harness.manager.expire_silence("nope", "ops")
    with pytest.raises(ValueError):
        harness.manager.create_silence({}, now, now + 1, "ops", "")


MAINTENANCE_ROUTES = """
receivers: [{name: ops, mqtt: {}}]
maintenance:
  - name: d07-night-works
    match: {district: d07, asset_type: water_main}
    start: "02:00"
    end: "05:00"
route: {receivers: [ops]}
"""


async def test_maintenance_window_mutes_by_time_of_day(harness_factory, ev: Ev) -> None:
    """A recurring 02:00-05:00 window mutes its matches inside it and not outside."""
    h = harness_factory(MAINTENANCE_ROUTES)
    day = 1_764_115_200_000  # 2025-11-26T00:00:00Z
    h.clock.set_ms(day + 3 * 3_600_000)  # 03:00 UTC
    await h.manager.handle([ev(district="d07"), ev(district="d06")])
    await h.deliver()
    assert [n.payload["alert"]["district"] for n in h.receivers["ops"].got] == ["d06"]  # type: ignore[index]
    await h.advance(2 * 3600 + 1)  # 05:00:01
    assert sorted(n.payload["alert"]["district"] for n in h.receivers["ops"].got) == ["d06", "d07"]  # type: ignore[index]


async def test_area_alert_inhibits_device_alerts(harness, ev: Ev) -> None:
    """An area alert mutes device alerts of its district and asset type, not others."""
    await harness.manager.handle(
        [
            ev(rule_id="area-pressure", source="_area"),
            ev(source="wm-1"),
            ev(source="wm-2", district="d02"),
        ]
    )
    await harness.deliver()
    got = sorted(n.payload["alert"]["source"] for n in harness.receivers["ops"].got)  # type: ignore[index]
    assert got == ["_area", "wm-2"]
    muted = [a for a in harness.manager.list_alerts(AlertFilter(), UNRESTRICTED) if a.silenced]
    assert [a.source for a in muted] == ["wm-1"]
    # once the area alert resolves, the device alert is notified
    await harness.manager.handle([ev(RuleState.RESOLVED, rule_id="area-pressure", source="_area")])
    await harness.advance(1)
    assert "wm-1" in [n.payload["alert"]["source"] for n in harness.receivers["ops"].got]  # type: ignore[index]


async def test_flapping_series_is_damped(harness, ev: Ev) -> None:
    """After 3 opens in 10 min, a clear is held back and a re-fire keeps the same alert."""
    for _ in range(2):
        await harness.manager.handle([ev()])
        await harness.advance(10)
        await harness.manager.handle([ev(RuleState.RESOLVED)])
        await harness.advance(10)
    await harness.manager.handle([ev()])
    third = harness.manager.list_alerts(AlertFilter(state="active"), UNRESTRICTED)[0]
    await harness.manager.handle([ev(RuleState.RESOLVED)])
    assert harness.manager.get_alert(third.id).status == "firing"  # type: ignore[union-attr]
    await harness.advance(60)
    await harness.manager.handle([ev()])  # re-fires inside the hold
    assert len(harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)) == 3
    await harness.manager.handle([ev(RuleState.RESOLVED)])
    await harness.advance(299)
    assert harness.manager.get_alert(third.id).status == "firing"  # type: ignore[union-attr]
    await harness.advance(2)
    assert harness.manager.get_alert(third.id).status == "resolved"  # type: ignore[union-attr]


async def test_incidents_group_by_district_and_asset_type(harness, ev: Ev) -> None:
    """Alerts of one district and asset type share an incident; another district gets its own."""
    await harness.manager.handle(
        [ev(source="wm-1"), ev(source="wm-2"), ev(source="wm-3", district="d02")]
    )
    alerts = {a.source: a for a in harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)}
    assert alerts["wm-1"].incident_id == alerts["wm-2"].incident_id
    assert alerts["wm-1"].incident_id != alerts["wm-3"].incident_id
    await harness.deliver()
    incident = harness.receivers["ops"].got[0].payload["incident"]
    assert incident["alerts"] >= 1  # type: ignore[index]


async def test_restart_mid_escalation_continues_on_time_without_duplicates(harness, ev: Ev) -> None:
    """A new manager on the same DB re-sends nothing and escalates at the planned time."""
    await harness.manager.handle([ev()])
    await harness.advance(30)
    await harness.advance(5 * 60)
    before = {name: r.kinds() for name, r in harness.receivers.items()}
    assert before["team"] == ["firing"]
    assert before["boss"] == []
    await harness.manager.close()
    harness.new_manager()  # the restart
    await harness.manager.tick()
    await harness.deliver()
    assert {name: r.kinds() for name, r in harness.receivers.items()} == before
    await harness.advance(4 * 60 + 29)  # 9m59s after the alert started
    assert harness.receivers["boss"].got == []
    await harness.advance(2)
    assert harness.receivers["boss"].kinds() == ["escalation"]
    ids = [n.notification_id for r in harness.receivers.values() for n in r.got]
    assert len(ids) == len(set(ids))


async def test_outbox_survives_restart_while_receiver_is_down(harness, ev: Ev) -> None:
    """Notifications queued while a receiver fails are delivered after a restart, once."""
    ops = harness.receivers["ops"]
    ops.fail = DeliveryError("down", retryable=True)
    await harness.manager.handle([ev()])
    await harness.deliver()
    assert ops.attempts == 1
    assert ops.got == []
    await harness.manager.close()
    harness.new_manager()
    ops.fail = None
    await harness.advance(2)  # past the first backoff (1 s ± 20 %)
    assert ops.kinds() == ["firing"]
    await harness.advance(600)
    assert ops.kinds() == ["firing"]


async def test_retryable_failure_backs_off_then_delivers_once(harness, ev: Ev) -> None:
    """A retryable failure is retried with backoff and delivered exactly once."""
    ops = harness.receivers["ops"]
    ops.fail = DeliveryError("503", retryable=True)
    await harness.manager.handle([ev(asset_type="bridge")])
    await harness.deliver()
    assert ops.attempts == 1
    assert harness.manager.pending_notifications() == {"ops": 1}
    ops.fail = None
    await harness.advance(2)
    assert ops.kinds() == ["firing"]
    assert harness.manager.pending_notifications() == {}


async def test_non_retryable_failure_is_recorded_and_dropped(harness, ev: Ev) -> None:
    """A non-retryable failure is logged in the timeline and not retried."""
    ops = harness.receivers["ops"]
    ops.fail = DeliveryError("400 bad request", retryable=False)
    await harness.manager.handle([ev(asset_type="bridge")])
    await harness.deliver()
    assert ops.attempts == 1
    assert harness.manager.pending_notifications() == {}
    alert = harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    failed = [t for t in harness.manager.timeline(alert.id) if t.detail.get("outcome") == "failed"]
    assert len(failed) == 1
    assert "400" in failed[0].comment
    await harness.advance(600)
    assert ops.attempts == 1


async def test_list_filters_and_scope(harness, ev: Ev) -> None:
    """Listing filters by state, district, severity and respects the caller's scope."""
    from hub.ports import Scope

    await harness.manager.handle(
        [
            ev(source="wm-1", district="d01"),
            ev(source="wm-2", district="d02", severity=Severity.WARNING),
        ]
    )
    m = harness.manager
    assert [a.source for a in m.list_alerts(AlertFilter(severity="warning"), UNRESTRICTED)] == [
        "wm-2"
    ]
    assert [
        a.source for a in m.list_alerts(AlertFilter(), Scope(districts=frozenset({"d01"})))
    ] == ["wm-1"]
    assert m.list_alerts(AlertFilter(state="resolved"), UNRESTRICTED) == []
    assert m.list_alerts(AlertFilter(), Scope(districts=frozenset())) == []


async def test_response_figures(harness, ev: Ev) -> None:
    """Time to acknowledge and to resolve are measured per alert and grouped."""
    m = harness.manager
    await m.handle([ev(source="wm-1"), ev(source="wm-2", district="d02")])
    by_source = {a.source: a for a in m.list_alerts(AlertFilter(), UNRESTRICTED)}
    harness.clock.advance(60)
    await m.acknowledge(by_source["wm-1"].id, "alice", "")
    harness.clock.advance(120)
    await m.resolve(by_source["wm-1"].id, "alice", "")
    await m.resolve(by_source["wm-2"].id, "bob", "")
    figures = m.response_figures(AlertFilter(), UNRESTRICTED)
    assert figures["overall"]["count"] == 2
    assert figures["overall"]["time_to_acknowledge_s"] == {"median": 60.0, "p90": 60.0}
    assert figures["overall"]["time_to_resolve_s"]["median"] == 180.0
    assert figures["by_district"]["d01"]["time_to_resolve_s"]["p90"] == 180.0
    assert figures["by_severity"]["critical"]["count"] == 2
    assert figures["by_asset_type"]["water_main"]["acknowledged"] == 1
    only_d02 = m.response_figures(AlertFilter(district="d02"), UNRESTRICTED)
    assert only_d02["overall"]["count"] == 1


async def test_severity_increase_reroutes(harness_factory, ev: Ev) -> None:
    """An alert whose severity rises reaches the routes of the new severity."""
    h = harness_factory(
        """
receivers: [{name: ops, mqtt: {}}, {name: boss, mqtt: {}}]
route:
  routes:
    - {receivers: [ops], continue: true}
    - {min_severity: emergency, receivers: [boss]}
"""
    )
    await h.manager.handle([ev(severity=Severity.WARNING)])
    await h.deliver()
    assert h.receivers["boss"].got == []
    await h.manager.handle([ev(severity=Severity.EMERGENCY)])
    await h.deliver()
    assert h.receivers["boss"].kinds() == ["firing"]
    assert h.receivers["ops"].kinds() == ["firing"]
    alert = h.manager.list_alerts(AlertFilter(), UNRESTRICTED)[0]
    assert alert.severity == "emergency"


async def test_muted_alerts_say_why_and_a_silence_preview_lists_what_it_would_mute(
    harness, ev: Ev
) -> None:
    """``muted_by`` names the inhibiting alert or the silence; the preview of a silence is
    the open alerts its matchers catch, worst first, with the same matching."""
    await harness.manager.handle(
        [
            ev(rule_id="area-pressure", source="_area", severity=Severity.EMERGENCY),
            ev(source="wm-1"),
            ev(source="wm-2", district="d02"),
        ]
    )
    alerts = {a.source: a for a in harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)}
    assert alerts["wm-1"].muted_by == f"inhibited:{alerts['_area'].id}"
    assert alerts["wm-2"].muted_by is None
    assert alerts["_area"].muted_by is None
    preview = harness.manager.silence_preview({"source": "wm-*"}, UNRESTRICTED)
    assert sorted(a.source for a in preview) == ["wm-1", "wm-2"]
    everything = harness.manager.silence_preview({"asset_type": "water_main"}, UNRESTRICTED)
    assert everything[0].source == "_area"  # the worst first
    scoped = harness.manager.silence_preview(
        {"source": "wm-*"}, Scope(districts=frozenset({"d02"}))
    )
    assert [a.source for a in scoped] == ["wm-2"]
    now = harness.clock.now_ms()
    silence = harness.manager.create_silence({"source": "wm-2"}, now, now + 60_000, "ops", "x")
    assert harness.manager.get_alert(alerts["wm-2"].id).muted_by == f"silence:{silence.id}"
    await harness.manager.resolve(alerts["wm-2"].id, "ops", "")
    assert harness.manager.get_alert(alerts["wm-2"].id).muted_by is None
    assert [
        a.source for a in harness.manager.silence_preview({"source": "wm-2"}, UNRESTRICTED)
    ] == []
