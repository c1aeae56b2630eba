"""Fixtures for the alert manager's unit tests: a state DB, a fake clock, routes from
YAML text, and recording receivers.

The recording receiver stands in for people's pagers and phones, which cannot run
here; every MQTT and HTTP path is tested against real servers in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.alerts.manager import AlertManager
from hub.alerts.routing import parse_routes
from hub.clock import FakeClock
from hub.messages import AlertEvent, Explanation, Notification, RuleEvent, RuleState, Severity
from hub.ports import DeliveryError
from hub.sqlite import connect


class Recorder:
    """A receiver that records what it gets; can be told to fail."""

    concurrency = 1

    def __init__(self) -> None:
        self.got: list[Notification] = []
        self.fail: DeliveryError | None = None
        self.attempts = 0

    async def send(self, notification: Notification) -> None:
        self.attempts += 1
        if self.fail is not None:
            raise self.fail
        self.got.append(notification)

    async def close(self) -> None:
        return None

    def kinds(self) -> list[str]:
        return [str(n.payload["kind"]) for n in self.got]


BASIC_ROUTES = """
receivers:
  - {name: ops, mqtt: {}}
  - {name: team, mqtt: {}}
  - {name: boss, mqtt: {}}
  - {name: chief, mqtt: {}}
route:
  group_wait: 0s
  repeat_interval: 1h
  routes:
    - receivers: [ops]
      continue: true
    - match: {asset_type: water_main}
      receivers: [team]
      group_wait: 30s
      escalate:
        - {after: 10m, receivers: [boss]}
        - {after: 30m, receivers: [chief]}
"""


class Harness:
    """One manager over one DB, its clock, receivers and emitted events."""

    def __init__(self, db: Path, clock: FakeClock, routes_yaml: str) -> None:
        self.db = db
        self.clock = clock
        self.routes_yaml = routes_yaml
        self.receivers: dict[str, Recorder] = {}
        self.events: list[AlertEvent] = []
        self.conns: list[sqlite3.Connection] = []
        self.locations: dict[str, tuple[float, float]] = {}
        self.manager = self.new_manager()

    def new_manager(self) -> AlertManager:
        """A fresh manager on the same DB (a restart); receivers keep their records."""
        routes, problems, _ = parse_routes(self.routes_yaml, "routes.yaml")
        assert routes is not None, problems
        for r in routes.receivers:
            self.receivers.setdefault(r.name, Recorder())
        conn = connect(self.db)
        self.conns.append(conn)
        self.manager = AlertManager(
            conn,
            routes,
            dict(self.receivers),
            clock=self.clock,
            on_event=self.events.append,
            locate=self.locations.get,
            sender="hub@city.example",
        )
        return self.manager

    async def deliver(self, limit_s: float = 5.0) -> None:
        """Run the outbox worker until nothing due is left."""
        task = asyncio.create_task(self.manager.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + limit_s
            while True:
                await asyncio.sleep(0.005)
                pending = (
                    self.conns[-1]
                    .execute(
                        "SELECT COUNT(*) FROM outbox WHERE next_attempt_ms <= ?",
                        (self.clock.now_ms(),),
                    )
                    .fetchone()[0]
                )
                if pending == 0:
                    break
                if loop.time() > deadline:
                    raise TimeoutError(f"{pending} notifications still due")
            # let in-flight settles land
            await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def advance(self, seconds: float) -> None:
        """Move the clock, run the timer, deliver."""
        self.clock.advance(seconds)
        await self.manager.tick()
        await self.deliver()

    def close(self) -> None:
        for c in self.conns:
            c.close()


def rule_event(
    state: RuleState = RuleState.FIRING,
    *,
    rule_id: str = "pressure-low",
    source: str = "wm-1",
    district: str = "d01",
    asset_type: str = "water_main",
    severity: Severity = Severity.CRITICAL,
    labels: dict[str, str] | None = None,
    ts_ms: int = 0,
    received_ms: int = 0,
) -> RuleEvent:
    """A rule event with sensible defaults."""
    return RuleEvent(
        rule_id=rule_id,
        rule_version="v1",
        state=state,
        severity=severity,
        district=district,
        asset_type=asset_type,
        source=source,
        ts_ms=ts_ms,
        explanation=Explanation(
            summary=f"{rule_id} {state.value} on {source}",
            threshold=2.0,
            observed={"pressure_bar": 1.2},
            readings=((ts_ms, 1.2),),
        ),
        labels=labels or {},
        description="Water main pressure below the service minimum",
        reading_received_ms=received_ms,
    )


@pytest.fixture
def harness_factory(tmp_path: Path, fake_clock: FakeClock) -> Iterator[Callable[..., Harness]]:
    """Build a harness with given routes (BASIC_ROUTES by default)."""
    made: list[Harness] = []

    def make(routes_yaml: str = BASIC_ROUTES) -> Harness:
        h = Harness(tmp_path / f"hub{len(made)}.db", fake_clock, routes_yaml)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def harness(harness_factory: Callable[..., Harness]) -> Harness:
    """A harness with BASIC_ROUTES."""
    return harness_factory()


@pytest.fixture
def ev() -> Callable[..., RuleEvent]:
    """The rule-event factory."""
    return rule_event
