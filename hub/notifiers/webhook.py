"""Webhook receivers: the notification as a JSON POST, signed like GitHub's webhooks.

``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the exact body bytes>`` with the
receiver's shared secret, so the receiver can check the sender and the content.
Timeouts, connection errors, 408, 429 and 5xx are retryable; other 4xx are not
(the receiver refuses this request; sending it again will not change that).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

import httpx

from hub.messages import Notification
from hub.ports import DeliveryError

SIGNATURE_HEADER = "X-Hub-Signature-256"
_RETRYABLE_4XX = frozenset({408, 425, 429})


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, body), header)


class WebhookNotifier:
    """POSTs notifications to one URL."""

    concurrency = 1
    digest = True  # people: one message per incident per group_interval

    def __init__(
        self,
        name: str,
        url: str,
        secret: bytes,
        *,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not secret:
            raise ValueError(f"webhook receiver {name!r} needs a secret")
        self.name = name
        self.url = url
        self._secret = secret
        self._headers = dict(headers or {})
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(self, notification: Notification) -> None:
        """POST the JSON body; raise DeliveryError on anything but 2xx."""
        body = json.dumps(
            {"notification_id": notification.notification_id, **notification.payload},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": "city-sensing-hub",
            "X-Hub-Notification-Id": notification.notification_id,
            SIGNATURE_HEADER: sign(self._secret, body),
        }
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timed out: {exc!r}", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"HTTP error: {exc!r}", retryable=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in _RETRYABLE_4XX
        raise DeliveryError(f"{self.url} answered {status}", retryable=retryable)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()
