"""Around every public open-data request (``/sta/…``, ``/open/…``): the rate limit and the
headers every public answer carries.

- The token bucket of the client's address (behind ``HUB_API__TRUSTED_PROXIES``
  the client they name, as for the API's lockout) is spent first; an empty one
  answers 429 with ``Retry-After`` before any work is done.
- Every answer, errors included, says which policy it was built under
  (``Open-Data-Policy-Version``), may be read by any web page
  (``Access-Control-Allow-Origin: *``: no credentials are involved), and exposes
  ``ETag`` to scripts. A CORS preflight is answered here (GET only).
- Public requests are not written to the audit log (anonymous, and a flood of
  them must not become a flood of database writes); they are counted in
  ``hub_open_data_requests_total`` by API and status, and what was published is
  in the release log.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub import metrics
from hub.api.auth import Network, client_address
from hub.opendata.policy import POLICY_HEADER
from hub.opendata.service import OpenData

PUBLIC_PREFIXES = ("/sta/", "/open/")
PUBLIC_ROOTS = ("/sta/v1.1",)


def is_public(path: str) -> bool:
    """True for the paths of the open-data endpoints."""
    return path.startswith(PUBLIC_PREFIXES) or path in PUBLIC_ROOTS


class OpenDataMiddleware:
    """Rate limit and common headers of the public endpoints (module docstring)."""

    def __init__(
        self, app: ASGIApp, *, service: OpenData, trusted_proxies: Sequence[Network]
    ) -> None:
        self.app = app
        self.service = service
        self.trusted = list(trusted_proxies)
        self.headers = (
            (POLICY_HEADER.lower().encode(), service.policy.version.encode()),
            (b"access-control-allow-origin", b"*"),
            (
                b"access-control-expose-headers",
                f"ETag, Retry-After, {POLICY_HEADER}".encode(),
            ),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http" or not is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["open_data"] = True  # the audit log leaves public requests out
        api = "sta" if scope["path"].startswith("/sta") else "bulk"
        headers = self.headers

        async def public_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
                metrics.OPEN_DATA_REQUESTS.labels(api, str(message["status"])).inc()
            await send(message)

        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await _preflight(public_send)
            return
        client = client_address(scope, self.trusted)
        wait = self.service.limiter.take(client, self.service.clock.monotonic())
        if wait is not None:
            message = f"too many requests from this address; try again in {wait} s"
            await _answer(
                public_send,
                429,
                orjson.dumps({"code": 429, "message": message, "detail": message}),
                [(b"retry-after", str(wait).encode()), (b"cache-control", b"no-store")],
            )
            return
        await self.app(scope, receive, public_send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def _preflight(send: Send) -> None:
    await _answer(
        send,
        204,
        b"",
        [
            (b"access-control-allow-methods", b"GET"),
            (b"access-control-allow-headers", b"If-None-Match, Accept"),
            (b"access-control-max-age", b"86400"),
        ],
    )


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    base = [(b"content-length", str(len(body)).encode())]
    if body:
        base.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": base + headers})
    await send({"type": "http.response.body", "body": body})
