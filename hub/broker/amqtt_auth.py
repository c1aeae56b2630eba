"""An amqtt authentication plugin for the loopback-only fallback broker.

amqtt's own ``AnonymousAuthPlugin`` marks every client anonymous, and amqtt then
drops anonymous clients' persistent sessions (no queued QoS 1 messages while the
hub is away), which breaks the hub's ingest contract. The fallback listens on
loopback only, so every local client is accepted and treated as identified by
its client id, which is what MQTT's persistent sessions need.
"""

from __future__ import annotations

from dataclasses import dataclass

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session


class LoopbackAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept every (loopback) client as a named, non-anonymous session."""

    async def authenticate(self, *, session: Session) -> bool:
        """Always True: the listener is bound to loopback only (checked before start)."""
        session.is_anonymous = False
        return True

    @dataclass
    class Config:
        """No options."""
