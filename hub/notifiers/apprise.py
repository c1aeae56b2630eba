"""Email, SMS gateways and chat through Apprise URLs (``mailto://``, ``twilio://``,
``slack://``, ``json://``…): the hub writes no channel code of its own."""

from __future__ import annotations

from collections.abc import Sequence

import apprise

from hub.messages import Notification
from hub.notifiers.base import render_text
from hub.ports import DeliveryError


def bad_apprise_urls(urls: Sequence[str]) -> list[str]:
    """The URLs Apprise cannot parse (a configuration error)."""
    bad = []
    for url in urls:
        probe = apprise.Apprise()
        if not probe.add(url):
            bad.append(url)
    return bad


class AppriseNotifier:
    """Sends a title and body to every URL of the receiver."""

    concurrency = 1
    digest = True  # people: one message per incident per group_interval

    def __init__(self, name: str, urls: Sequence[str], *, title_prefix: str = "") -> None:
        bad = bad_apprise_urls(urls)
        if bad:
            raise ValueError(f"receiver {name!r}: Apprise cannot parse {', '.join(bad)}")
        self.name = name
        self._title_prefix = title_prefix
        self._apprise = apprise.Apprise()
        for url in urls:
            self._apprise.add(url)

    async def send(self, notification: Notification) -> None:
        """Notify every URL; Apprise reports only success or not, so failures are retryable."""
        title, body = render_text(notification)
        try:
            ok = await self._apprise.async_notify(body=body, title=f"{self._title_prefix}{title}")
        except Exception as exc:  # a plugin's network error: the channel may come back
            raise DeliveryError(f"Apprise failed: {exc!r}", retryable=True) from exc
        if not ok:
            raise DeliveryError(f"Apprise could not notify receiver {self.name}", retryable=True)

    async def close(self) -> None:
        """Nothing to release."""
