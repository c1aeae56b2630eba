"""The embedded MQTT broker for ``hub run`` when ``HUB_MQTT__URL`` is empty (CONTRACT §5).

Mosquitto as a child process when it is installed (fast, correct, persistent); the
in-process amqtt broker as the fallback so a machine without Mosquitto still runs
``hub demo``. See docs/deploy.md for what each supports.
"""

from hub.broker.embedded import BrokerStartError, EmbeddedBroker, PortInUse

__all__ = ["BrokerStartError", "EmbeddedBroker", "PortInUse"]
