"""Build a notifier from a receiver's channel options (as read from the routing file)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hub.clock import Clock
from hub.notifiers.apprise import AppriseNotifier
from hub.notifiers.base import LogNotifier, Notifier
from hub.notifiers.mqtt import MqttNotifier
from hub.notifiers.webhook import WebhookNotifier


class NotifierConfigError(ValueError):
    """A receiver cannot be built (missing secret, unparsable Apprise URL...)."""


def build_notifier(
    name: str,
    kind: str,
    options: Mapping[str, Any],
    *,
    mqtt_url: str,
    topic_prefix: str,
    clock: Clock,
    client_id: str = "",
    default_secret: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Notifier:
    """One notifier; raises NotifierConfigError with a sentence naming the receiver."""
    env = os.environ if environ is None else environ
    try:
        if kind == "mqtt":
            return MqttNotifier(
                name,
                mqtt_url,
                topic_prefix,
                clock=clock,
                client_id=client_id,
                retain_state=bool(options.get("retain_state", True)),
            )
        if kind == "webhook":
            return WebhookNotifier(
                name,
                str(options["url"]),
                _webhook_secret(name, options, env, default_secret),
                timeout_s=int(options.get("timeout", 5000)) / 1000,
                headers=options.get("headers") or {},
            )
        if kind == "apprise":
            return AppriseNotifier(
                name, list(options["urls"]), title_prefix=str(options.get("title_prefix", ""))
            )
        if kind == "log":
            return LogNotifier(name, str(options.get("level", "warning")))
    except NotifierConfigError:
        raise
    except ValueError as exc:
        raise NotifierConfigError(str(exc)) from exc
    raise NotifierConfigError(f"receiver {name!r}: unknown channel {kind!r}")


def _webhook_secret(
    name: str, options: Mapping[str, Any], env: Mapping[str, str], default: str | None
) -> bytes:
    secret_env = options.get("secret_env")
    secret = env.get(secret_env) if secret_env else None
    if secret_env and not secret:
        raise NotifierConfigError(
            f"receiver {name!r}: environment variable {secret_env} is not set"
        )
    secret = secret or default
    if not secret:
        raise NotifierConfigError(
            f"receiver {name!r}: webhook needs a secret (secret_env in the routing"
            " file, or HUB_ALERTS__WEBHOOK_SECRET)"
        )
    return secret.encode()
