"""Notifiers: the only modules that talk to receivers (MQTT, webhooks, Apprise).

Each ``send`` raises :class:`DeliveryError` saying whether trying again may help;
the alert manager's durable outbox retries the retryable ones.
"""

from hub.notifiers.base import DeliveryError, LogNotifier, Notifier

__all__ = ["DeliveryError", "LogNotifier", "Notifier"]
