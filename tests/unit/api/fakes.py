"""In-memory stand-ins for the stage ports, for the API's unit tests.

They stand in for stages that are built and tested on their own (registry, alert
manager, rule service, dead letters, health, event bus); they implement just the
port contracts the API relies on (the telemetry store is the real embedded store,
the catalog the one shipped with the package).
The integration tests (tests/integration/test_api_*.py) run the API against the
real implementations instead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from html import escape
from typing import Any

from hub.clock import Clock
from hub.messages import AlertEvent, AlertStatus, Severity
from hub.ports import (
    AlertFilter,
    AlertRecord,
    AlertView,
    Conflict,
    DeadLetter,
    DeviceCounts,
    DeviceFilter,
    DeviceInfo,
    HealthReport,
    MaintenancePeriod,
    NotFound,
    ResponseFact,
    RuleInvalid,
    RuleProblem,
    RuleSummary,
    Scope,
    Silence,
    StreamEvent,
    ThresholdLine,
    Transition,
)


class FakeRegistry:
    """Devices in a dict."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceInfo] = {}

    def add(self, device_id: str, district: str, asset_type: str, **kw: Any) -> DeviceInfo:
        info = DeviceInfo(
            device_id=device_id,
            district=district,
            asset_type=asset_type,
            status=kw.pop("status", "online"),
            last_seen_ms=kw.pop("last_seen_ms", 1_764_000_000_000),
            latest=kw.pop("latest", {}),
            latest_ts_ms=kw.pop("latest_ts_ms", None),
            stale=kw.pop("stale", False),
            **kw,
        )
        self.devices[device_id] = info
        return info

    def list_devices(self, flt: DeviceFilter, scope: Scope) -> list[DeviceInfo]:
        out = [
            d
            for d in sorted(self.devices.values(), key=lambda d: d.device_id)
            if scope.allows(d.district, d.asset_type)
            and (flt.district is None or d.district == flt.district)
            and (flt.asset_type is None or d.asset_type == flt.asset_type)
            and (flt.status is None or d.status == flt.status)
            and (flt.stale is None or d.stale == flt.stale)
        ]
        return out[flt.offset : flt.offset + flt.limit]

    def get_device(self, device_id: str) -> DeviceInfo | None:
        return self.devices.get(device_id)

    def upsert_device(
        self,
        device_id: str,
        district: str,
        asset_type: str,
        latitude: float | None,
        longitude: float | None,
        metadata: Mapping[str, Any],
    ) -> DeviceInfo:
        old = self.devices.get(device_id)
        if old is None:
            return self.add(
                device_id,
                district,
                asset_type,
                status="unknown",
                last_seen_ms=None,
                latitude=latitude,
                longitude=longitude,
                metadata=dict(metadata),
                provisioned=True,
            )
        new = replace(
            old,
            district=district,
            asset_type=asset_type,
            latitude=latitude,
            longitude=longitude,
            metadata=dict(metadata),
            provisioned=True,
        )
        self.devices[device_id] = new
        return new

    def delete_device(self, device_id: str) -> bool:
        return self.devices.pop(device_id, None) is not None

    def districts(self, scope: Scope) -> list[str]:
        return sorted(
            {d.district for d in self.devices.values() if scope.allows(d.district, d.asset_type)}
        )

    def device_counts(
        self, scope: Scope, district: str | None = None
    ) -> dict[tuple[str, str], DeviceCounts]:
        out: dict[tuple[str, str], DeviceCounts] = {}
        for d in self.devices.values():
            if not scope.allows(d.district, d.asset_type) or district not in (None, d.district):
                continue
            c = out.get((d.district, d.asset_type), DeviceCounts())
            out[(d.district, d.asset_type)] = DeviceCounts(
                c.devices + 1,
                c.online + (d.status == "online"),
                c.offline + (d.status == "offline"),
                c.stale + d.stale,
            )
        return out


class FakeEvents:
    """A tiny event bus; ``finite`` makes subscriptions end after the queued events (tests)."""

    def __init__(self) -> None:
        self._subscribers: list[asyncio.Queue[StreamEvent | None]] = []
        self.preset: list[StreamEvent] | None = None

    def publish(self, event: StreamEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[StreamEvent]:
        if self.preset is not None:
            for event in self.preset:
                yield event
            return
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.remove(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class FakeAlerts:
    """Alerts and silences in dicts; publishes transitions to ``events``."""

    def __init__(self, clock: Clock, events: FakeEvents) -> None:
        self.clock = clock
        self.events = events
        self.alerts: dict[str, AlertRecord] = {}
        self.timelines: dict[str, list[Transition]] = {}
        self.silences: dict[str, Silence] = {}
        self._ids = itertools.count(1)

    def fire(
        self,
        district: str,
        asset_type: str,
        source: str,
        severity: str = "critical",
        rule_id: str = "flood-critical",
        summary: str | None = None,
        explanation: Mapping[str, Any] | None = None,
    ) -> AlertRecord:
        now = self.clock.now_ms()
        alert_id = f"a{next(self._ids):04d}"
        summary = summary if summary is not None else f"{rule_id} on {source}"
        alert = AlertRecord(
            id=alert_id,
            rule_id=rule_id,
            rule_version="v1",
            status="firing",
            severity=severity,
            district=district,
            asset_type=asset_type,
            source=source,
            summary=summary,
            description="",
            labels={"team": "t"},
            explanation=explanation
            if explanation is not None
            else {"summary": "water_level_m 3.4 > 3.0", "threshold": 3.0},
            started_ms=now,
            updated_ms=now,
            acknowledged_ms=None,
            resolved_ms=None,
        )
        self.alerts[alert_id] = alert
        self.timelines[alert_id] = [Transition(now, "firing", "rule", summary)]
        self._publish(alert, "rule", summary)
        return alert

    def _publish(self, alert: AlertRecord, actor: str, comment: str) -> None:
        self.events.publish(
            AlertEvent(
                alert_id=alert.id,
                rule_id=alert.rule_id,
                status=AlertStatus(alert.status),
                severity=Severity.parse(alert.severity),
                district=alert.district,
                asset_type=alert.asset_type,
                source=alert.source,
                ts_ms=alert.updated_ms,
                summary=alert.summary,
                actor=actor,
                comment=comment,
            )
        )

    def list_alerts(self, flt: AlertFilter, scope: Scope) -> list[AlertRecord]:
        def state_ok(a: AlertRecord) -> bool:
            if flt.state is None:
                return True
            if flt.state == "active":
                return a.status != "resolved"
            return a.status == flt.state

        out = [
            a
            for a in sorted(self.alerts.values(), key=lambda a: a.id, reverse=True)
            if scope.allows(a.district, a.asset_type)
            and state_ok(a)
            and (flt.district is None or a.district == flt.district)
            and (flt.severity is None or a.severity == flt.severity)
            and (flt.asset_type is None or a.asset_type == flt.asset_type)
            and (flt.rule_id is None or a.rule_id == flt.rule_id)
        ]
        return out[flt.offset : flt.offset + flt.limit]

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        return self.alerts.get(alert_id)

    def timeline(self, alert_id: str) -> list[Transition]:
        return list(self.timelines.get(alert_id, []))

    def _change(self, alert_id: str, status: str, actor: str, comment: str) -> AlertRecord:
        alert = self.alerts.get(alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.status == "resolved":
            raise Conflict(f"alert {alert_id} is resolved")
        now = self.clock.now_ms()
        alert = replace(
            alert,
            status=status,
            updated_ms=now,
            acknowledged_ms=now if status == "acknowledged" else alert.acknowledged_ms,
            resolved_ms=now if status == "resolved" else None,
        )
        self.alerts[alert_id] = alert
        self.timelines[alert_id].append(Transition(now, status, actor, comment))
        self._publish(alert, actor, comment)
        return alert

    async def acknowledge(self, alert_id: str, actor: str, comment: str) -> AlertRecord:
        alert = self.alerts.get(alert_id)
        if alert is not None and alert.status == "acknowledged":
            raise Conflict(f"alert {alert_id} is already acknowledged")
        return self._change(alert_id, "acknowledged", actor, comment)

    async def resolve(
        self, alert_id: str, actor: str, comment: str, reason: str = "other"
    ) -> AlertRecord:
        alert = self._change(alert_id, "resolved", actor, comment)
        alert = self.alerts[alert_id] = replace(alert, resolution=reason)
        return alert

    async def comment(self, alert_id: str, actor: str, comment: str) -> AlertRecord:
        alert = self.alerts.get(alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        self.timelines[alert_id].append(
            Transition(self.clock.now_ms(), "commented", actor, comment)
        )
        return alert

    def list_silences(self, include_expired: bool) -> list[Silence]:
        now = self.clock.now_ms()
        return [
            s
            for s in sorted(self.silences.values(), key=lambda s: s.id, reverse=True)
            if include_expired or s.ends_ms > now
        ]

    def create_silence(
        self, matchers: Mapping[str, str], starts_ms: int, ends_ms: int, actor: str, comment: str
    ) -> Silence:
        silence = Silence(
            f"s{next(self._ids):04d}", dict(matchers), starts_ms, ends_ms, actor, comment
        )
        self.silences[silence.id] = silence
        return silence

    def expire_silence(self, silence_id: str, actor: str) -> Silence:
        silence = self.silences.get(silence_id)
        if silence is None:
            raise NotFound(silence_id)
        silence = replace(silence, ends_ms=self.clock.now_ms())
        self.silences[silence_id] = silence
        return silence

    def _viewed(
        self, alert: AlertRecord, view: AlertView | None
    ) -> tuple[AlertRecord, list[Transition]]:
        timeline: list[Transition] = self.timelines.get(alert.id, [])
        if view is None:
            return alert, timeline
        shown, shown_timeline = view(alert, timeline)
        return shown, list(shown_timeline)

    def silence_preview(self, matchers: Mapping[str, str], scope: Scope) -> list[AlertRecord]:
        def labels(a: AlertRecord) -> dict[str, str]:
            return {
                **a.labels,
                "district": a.district,
                "asset_type": a.asset_type,
                "severity": a.severity,
                "rule_id": a.rule_id,
                "source": a.source,
            }

        return [
            a
            for a in self.list_alerts(AlertFilter(state="active", limit=10**6), scope)
            if all(labels(a).get(k) == v for k, v in matchers.items())
        ]

    def cap_xml(self, alert_id: str, *, view: AlertView | None = None) -> str:
        """A CAP-shaped document carrying what the real one does: summary and notes."""
        if alert_id not in self.alerts:
            raise NotFound(alert_id)
        alert, timeline = self._viewed(self.alerts[alert_id], view)
        notes = "".join(f"<note>{escape(t.comment)}</note>" for t in timeline if t.comment)
        return (
            f'<?xml version="1.0"?><alert><identifier>{alert_id}</identifier>{notes}'
            f"<info><description>{escape(alert.summary)}</description></info></alert>"
        )

    def cap_feed(self, scope: Scope, base_url: str, *, view: AlertView | None = None) -> str:
        entries = "".join(
            f"<entry><id>{a.id}</id><summary>{escape(self._viewed(a, view)[0].summary)}"
            "</summary></entry>"
            for a in self.alerts.values()
            if scope.allows(a.district, a.asset_type)
        )
        return f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">{entries}</feed>'

    def response_figures(self, flt: AlertFilter, scope: Scope) -> dict[str, Any]:
        alerts = self.list_alerts(replace(flt, limit=10**9), scope)
        return {"overall": {"count": len(alerts)}}

    def response_facts(self, start_ms: int, end_ms: int, scope: Scope) -> list[ResponseFact]:
        return [
            ResponseFact(
                alert_id=a.id,
                rule_id=a.rule_id,
                severity=a.severity,
                district=a.district,
                asset_type=a.asset_type,
                source=a.source,
                started_ms=a.started_ms,
                acknowledged_ms=a.acknowledged_ms,
                responded_ms=a.acknowledged_ms,
                resolved_ms=a.resolved_ms,
                resolved_by=None,
                resolution=a.resolution,
                escalations=0,
                muted_ms=0,
                ack_target_ms=None,
            )
            for a in self.alerts.values()
            if start_ms <= a.started_ms < end_ms and scope.allows(a.district, a.asset_type)
        ]

    def maintenance_periods(self, start_ms: int, end_ms: int) -> list[MaintenancePeriod]:
        return [
            MaintenancePeriod(dict(s.matchers), s.starts_ms, s.ends_ms, f"silence:{s.id}")
            for s in self.silences.values()
            if s.starts_ms < end_ms and s.ends_ms > start_ms
        ]


class FakeRules:
    """Rules in a dict; YAML containing ``invalid`` is rejected with a file:line problem."""

    def __init__(self) -> None:
        self.rules: dict[str, RuleSummary] = {}
        self.log: list[dict[str, Any]] = []

    def add(
        self,
        rule_id: str,
        *,
        managed: bool = True,
        firing: int = 0,
        labels: Mapping[str, str] | None = None,
    ) -> RuleSummary:
        rule = RuleSummary(
            id=rule_id,
            kind="threshold",
            version="v1",
            file=f"rules/managed/{rule_id}.yaml" if managed else "rules/flood.yaml",
            managed=managed,
            enabled=True,
            severity="critical",
            description="",
            source_yaml=f"id: {rule_id}\n",
            firing=firing,
            pending=0,
            labels=dict(labels if labels is not None else {"team": "t"}),
        )
        self.rules[rule_id] = rule
        return rule

    @staticmethod
    def _parse(source_yaml: str) -> str:
        if "invalid" in source_yaml:
            raise RuleInvalid([RuleProblem("rules/managed/new.yaml", 3, "unknown field 'invalid'")])
        for line in source_yaml.splitlines():
            if line.startswith("id:"):
                return line.split(":", 1)[1].strip()
        raise RuleInvalid([RuleProblem("rules/managed/new.yaml", 1, "id is required")])

    def list_rules(self) -> list[RuleSummary]:
        return list(self.rules.values())

    def get_rule(self, rule_id: str) -> RuleSummary | None:
        return self.rules.get(rule_id)

    def create_rule(self, source_yaml: str, actor: str) -> RuleSummary:
        rule_id = self._parse(source_yaml)
        if rule_id in self.rules:
            raise Conflict(f"rule {rule_id} exists")
        self.log.append({"rule_id": rule_id, "author": actor, "action": "create"})
        return self.add(rule_id)

    def update_rule(self, rule_id: str, source_yaml: str, actor: str) -> RuleSummary:
        if rule_id not in self.rules:
            raise NotFound(rule_id)
        if not self.rules[rule_id].managed:
            raise Conflict(f"rule {rule_id} comes from a file the API does not manage")
        self._parse(source_yaml)
        self.log.append({"rule_id": rule_id, "author": actor, "action": "update"})
        return self.rules[rule_id]

    def delete_rule(self, rule_id: str, actor: str) -> None:
        if rule_id not in self.rules:
            raise NotFound(rule_id)
        if not self.rules[rule_id].managed:
            raise Conflict(f"rule {rule_id} comes from a file the API does not manage")
        del self.rules[rule_id]
        self.log.append({"rule_id": rule_id, "author": actor, "action": "delete"})

    def problems(self) -> list[RuleProblem]:
        return [RuleProblem("rules/broken.yaml", 7, "op must be one of >, <")]

    def changes(self, limit: int) -> list[dict[str, Any]]:
        return list(reversed(self.log))[:limit]

    def thresholds(self, district: str, asset_type: str, device_id: str) -> list[ThresholdLine]:
        if asset_type != "flood_gauge" or "flood-critical" not in self.rules:
            return []
        return [ThresholdLine("flood-critical", "water_level_m", ">", 3.0, 2.8, "critical")]


class FakeDeadLetters:
    """A list of rejections."""

    def __init__(self) -> None:
        self.items: list[DeadLetter] = []

    def add(self, topic: str, reason: str, device_id: str | None, district: str | None) -> None:
        self.items.append(
            DeadLetter(
                len(self.items) + 1,
                1_764_000_000_000,
                topic,
                reason,
                "bad",
                "{}",
                device_id,
                district,
            )
        )

    def recent(
        self, *, reason: str | None, device_id: str | None, limit: int, scope: Scope
    ) -> list[DeadLetter]:
        return [
            d
            for d in reversed(self.items)
            if (reason is None or d.reason == reason)
            and (device_id is None or d.device_id == device_id)
        ][:limit]

    def counts_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.items:
            counts[d.reason] = counts.get(d.reason, 0) + 1
        return counts


class FakeHealth:
    """A fixed health report."""

    def __init__(self) -> None:
        self.ready = True

    async def health(self) -> HealthReport:
        return HealthReport(ok=self.ready, ready=self.ready, checks={"broker": {"ok": True}})
