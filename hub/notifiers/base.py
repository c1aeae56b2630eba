"""What every notifier is: ``send`` one notification or raise ``DeliveryError``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from hub.logging import get_logger
from hub.messages import Notification
from hub.ports import DeliveryError

__all__ = ["DeliveryError", "LogNotifier", "Notifier", "render_text"]

log = get_logger(__name__)


class Notifier(Protocol):
    """A channel to one receiver."""

    #: How many notifications the outbox may have in flight at once to this
    #: receiver. 1 keeps strict order (firing before resolved) for HTTP receivers;
    #: MQTT keeps order per connection, so it can pipeline.
    concurrency: int
    #: True for channels read by people (webhook, Apprise, log): the outbox sends
    #: them one digest per incident per group_interval instead of one per alert.
    #: MQTT stays per alert: sirens and boards act on each event.
    digest: bool

    async def send(self, notification: Notification) -> None:
        """Deliver, or raise DeliveryError(retryable=...)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _alert(notification: Notification) -> Mapping[str, Any]:
    alert = notification.payload.get("alert", {})
    return alert if isinstance(alert, Mapping) else {}


#: Lines of a digest's text body that list notifications (the rest is counted).
DIGEST_LINES = 20


def render_text(notification: Notification) -> tuple[str, str]:
    """A human title and body for chat, email and SMS channels."""
    if notification.payload.get("kind") == "digest":
        return _render_digest(notification)
    a = _alert(notification)
    kind = str(notification.payload.get("kind", "firing"))
    severity = str(a.get("severity", "")).upper()
    where = f"{a.get('district', '?')}/{a.get('source', '?')}"
    title = f"[{severity}] {a.get('rule_id', 'alert')} at {where} ({kind})"
    lines = [
        str(a.get("summary", "")),
        f"status: {a.get('status', '')}; asset type: {a.get('asset_type', '')}",
        f"alert: {a.get('id', notification.alert_id)}",
    ]
    incident = notification.payload.get("incident")
    if isinstance(incident, Mapping) and incident.get("id"):
        lines.append(f"incident: {incident['id']} ({incident.get('open_alerts', '?')} open)")
    step = notification.payload.get("escalation_step")
    if isinstance(step, int) and step > 0:
        lines.append(f"ESCALATION step {step}: not acknowledged yet")
    return title, "\n".join(line for line in lines if line)


def _render_digest(notification: Notification) -> tuple[str, str]:
    listed = notification.payload.get("notifications")
    inner = [n for n in listed if isinstance(n, Mapping)] if isinstance(listed, list) else []
    alerts = [n.get("alert", {}) for n in inner]
    alerts = [a for a in alerts if isinstance(a, Mapping)]
    order = ["info", "warning", "critical", "emergency"]
    worst = max(
        (str(a.get("severity", "")) for a in alerts),
        key=lambda s: order.index(s) if s in order else -1,
        default="",
    )
    incident = notification.payload.get("incident")
    incident = incident if isinstance(incident, Mapping) else {}
    labels = incident.get("labels")
    where = ", ".join(f"{v}" for v in labels.values() if v) if isinstance(labels, Mapping) else ""
    title = f"[{worst.upper()}] {len(inner)} alert notifications: incident {where or '?'}"
    lines = [
        f"incident: {incident.get('id', '?')} ({incident.get('open_alerts', '?')} open of"
        f" {incident.get('alerts', '?')})"
    ]
    for n, a in zip(inner[:DIGEST_LINES], alerts[:DIGEST_LINES], strict=False):
        lines.append(
            f"- {n.get('kind', '?')}: [{str(a.get('severity', '')).upper()}]"
            f" {a.get('rule_id', '?')} at {a.get('district', '?')}/{a.get('source', '?')}:"
            f" {a.get('summary', '')}"
        )
    if len(inner) > DIGEST_LINES:
        lines.append(f"... and {len(inner) - DIGEST_LINES} more")
    return title, "\n".join(lines)


class LogNotifier:
    """Writes notifications to the hub's log: a console receiver for the demo and for
    teams whose real channel is not configured yet. Never fails."""

    concurrency = 1
    digest = True

    def __init__(self, name: str, level: str = "warning") -> None:
        self.name = name
        self.level = level

    async def send(self, notification: Notification) -> None:
        """Log one line per notification."""
        title, body = render_text(notification)
        getattr(log, self.level)(
            "alert notification",
            receiver=self.name,
            title=title,
            body=body,
            notification_id=notification.notification_id,
        )

    async def close(self) -> None:
        """Nothing to release."""
