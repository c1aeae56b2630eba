"""An amqtt plugin that gives the hub its persistent session before any device connects.

The in-process broker starts empty (amqtt keeps sessions in memory only), and the
hub's ingest session subscribes a moment after the listener is up: devices that
reconnect in that moment (after a hub restart, most of them at once, with their
backfill) would publish to no subscriber, and the broker would drop the readings
after acknowledging them. Created in ``on_broker_pre_start``, before the listener
accepts anyone, the session queues those readings until the hub connects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amqtt.broker import BrokerContext
from amqtt.plugins.base import BasePlugin


class HubSessionPlugin(BasePlugin[BrokerContext]):  # type: ignore[misc]
    """Create the hub's (offline, persistent) session with its QoS 1 subscriptions."""

    async def on_broker_pre_start(self) -> None:
        """Subscribe the hub's client id to its topics before the listener starts."""
        for topic in self.config.topics:
            await self.context.add_subscription(self.config.client_id, topic, 1)

    @dataclass
    class Config:
        """The hub's MQTT client id and topic filters."""

        client_id: str = "hub"
        topics: list[str] = field(default_factory=list)
