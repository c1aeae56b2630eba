"""Lifecycle invariants under arbitrary rule-event sequences (Hypothesis), and bad input."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.alerts.manager import AlertManager
from hub.alerts.routing import parse_routes
from hub.clock import FakeClock
from hub.messages import AlertEvent, RuleEvent, RuleState, Severity
from hub.ports import UNRESTRICTED, AlertFilter
from hub.sqlite import connect

ROUTES = """
receivers: [{name: ops, log: {}}]
flapping: {window: 10m, threshold: 3, hold: 2m}
route: {receivers: [ops], group_wait: 30s, repeat_interval: 5m}
"""

steps = st.lists(
    st.tuples(
        st.sampled_from(["fire", "clear", "ack", "resolve", "wait"]),
        st.sampled_from(["s1", "s2"]),
        st.integers(min_value=0, max_value=400),
    ),
    max_size=30,
)


def _run(sequence: list[tuple[str, str, int]], ev: Callable[..., RuleEvent]) -> None:
    routes, problems, _ = parse_routes(ROUTES, "r.yaml")
    assert routes is not None, problems
    with tempfile.TemporaryDirectory() as tmp:
        conn = connect(Path(tmp) / "hub.db")
        clock = FakeClock()
        events: list[AlertEvent] = []
        manager = AlertManager(
            conn, routes, {}, clock=clock, on_event=events.append, locate=lambda _: None
        )

        async def play() -> None:
            for action, source, seconds in sequence:
                if action == "fire":
                    await manager.handle([ev(source=source, severity=Severity.WARNING)])
                elif action == "clear":
                    await manager.handle([ev(RuleState.RESOLVED, source=source)])
                elif action in {"ack", "resolve"}:
                    open_ = manager.list_alerts(AlertFilter(state="firing"), UNRESTRICTED)
                    for alert in open_[:1]:
                        if action == "ack":
                            await manager.acknowledge(alert.id, "op", "")
                        else:
                            await manager.resolve(alert.id, "op", "")
                else:
                    clock.advance(seconds)
                    await manager.tick()

        asyncio.run(play())
        alerts = manager.list_alerts(AlertFilter(limit=10_000), UNRESTRICTED)
        for source in ("s1", "s2"):
            active = [a for a in alerts if a.source == source and a.status != "resolved"]
            assert len(active) <= 1, "one open alert per (rule, source)"
        for alert in alerts:
            statuses = [t.status for t in manager.timeline(alert.id)]
            assert statuses[0] == "firing"
            if "resolved" in statuses:
                assert statuses.count("resolved") == 1
                assert alert.resolved_ms is not None
                assert alert.resolved_ms >= alert.started_ms
            if alert.acknowledged_ms is not None:
                assert alert.acknowledged_ms >= alert.started_ms
        ids = [r[0] for r in conn.execute("SELECT notification_id FROM outbox")]
        assert len(ids) == len(set(ids))
        conn.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=steps)
def test_lifecycle_invariants(
    sequence: list[tuple[str, str, int]], ev: Callable[..., RuleEvent]
) -> None:
    """Any event sequence keeps one open alert per series, a sane timeline, unique notifications."""
    _run(sequence, ev)


async def test_bad_event_is_counted_and_others_go_on(harness, ev: Callable[..., RuleEvent]) -> None:
    """A malformed rule event is dropped and counted; the rest of the batch is applied."""
    bad = ev(source="wm-bad")
    object.__setattr__(bad, "severity", 7)  # not a Severity: what a buggy producer might send
    await harness.manager.handle([bad, ev(source="wm-good")])
    sources = [a.source for a in harness.manager.list_alerts(AlertFilter(), UNRESTRICTED)]
    assert sources == ["wm-good"]
    assert harness.manager.bad_events == 1
