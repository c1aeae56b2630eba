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

    async def send(self, notification: Notification) -> None:
        """Deliver, or raise DeliveryError(retryable=...)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _alert(notification: Notification) -> Mapping[str, Any]:
    alert = notification.payload.get("alert", {})
    return alert if isinstance(alert, Mapping) else {}


def render_text(notification: Notification) -> tuple[str, str]:
    """A human title and body for chat, email and SMS channels."""
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


class LogNotifier:
    """Writes notifications to the hub's log: a console receiver for the demo and for
    teams whose real channel is not configured yet. Never fails."""

    concurrency = 1

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
