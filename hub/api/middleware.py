"""One ASGI middleware around the whole app: body limit, security headers, audit, catch-all.

Pure ASGI rather than ``BaseHTTPMiddleware`` so the live event stream is not buffered.
"""

from __future__ import annotations

import json
import sqlite3
import traceback
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.audit import AuditEntry, chain_key, record, resource_of
from hub.api.auth import Principal, client_address
from hub.api.context import ApiContext
from hub.api.errors import BodyTooLarge
from hub.logging import get_logger
from hub.messages import DISTRICT_RE

log = get_logger(__name__)

# The console loads its scripts and styles from /static only; nothing inline, nothing
# remote. Images may also come from the map's tile server when one is configured.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def security_headers(tile_origin: str | None = None) -> tuple[tuple[bytes, bytes], ...]:
    """Headers of every response; ``tile_origin`` (``https://tiles.example``) may serve images."""
    csp = CONTENT_SECURITY_POLICY
    if tile_origin:
        csp = csp.replace("img-src 'self' data:", f"img-src 'self' data: {tile_origin}")
    return (
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    )


SECURITY_HEADERS = security_headers()
#: Responses that always leave a trace in the audit log, with or without a valid key.
AUDITED_REFUSALS = frozenset({401, 403, 429})


class GuardMiddleware:
    """Bounds request bodies, adds security headers, audits, and turns bugs into a bare 500."""

    def __init__(self, app: ASGIApp, *, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx
        self.max_body = ctx.settings.api.max_body_bytes
        self.headers = security_headers(ctx.settings.console.tile_origin)
        secret = ctx.settings.audit.chain_key
        self.chain_key = chain_key(
            secret.get_secret_value() if secret is not None else None, ctx.settings.data_dir
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        started = False
        is_api = scope["path"].startswith("/api/")
        open311 = scope["path"].startswith("/open311/")

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.extend(self.headers)
                if is_api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
                self._audit(scope, state, int(message["status"]))
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._error(
                guarded_send,
                413,
                f"request body larger than {self.max_body} bytes",
                open311=open311,
            )
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge as exc:
            if not started:
                await self._error(guarded_send, 413, str(exc.detail), open311=open311)
        except Exception as exc:
            # A plain traceback string: rich tracebacks with locals of ASGI frames take seconds.
            log.error(  # noqa: TRY400 - see the comment above
                "unhandled error in API request",
                path=scope["path"],
                error=repr(exc),
                traceback=traceback.format_exc(),
            )
            if not started:
                await self._error(guarded_send, 500, "internal server error", open311=open311)

    def _district(
        self, scope: Scope, state: MutableMapping[str, Any], principal: Principal | None
    ) -> str | None:
        """The district a request was about, for the audit report: the one a route
        named, else the ``district`` query parameter, else the device's or alert's
        district in the path, else the key's only district; None for city-wide."""
        named: str | None = state.get("audit_district")
        if named:
            return named
        found = _district_of_query(scope.get("query_string", b""))
        if found:
            return found
        parts = scope["path"].split("/")
        if len(parts) >= 5 and parts[1:3] == ["api", "v1"]:
            try:
                if parts[3] == "devices":
                    device = self.ctx.registry.get_device(parts[4])
                    if device is not None:
                        return device.district
                elif parts[3] == "alerts":
                    alert = self.ctx.alerts.get_alert(parts[4])
                    if alert is not None:
                        return alert.district
            except Exception:  # a lookup must never cost the audit entry
                log.exception("could not find the district of an audited request")
        if principal is not None and principal.scope.districts is not None:
            only = sorted(principal.scope.districts)
            if len(only) == 1:
                return only[0]
        return None

    @staticmethod
    async def _error(send: Send, status: int, detail: str, *, open311: bool = False) -> None:
        # Open311 clients read the specification's error list (hub.api.routes.open311).
        doc: Any = [{"code": status, "description": detail}] if open311 else {"detail": detail}
        body = json.dumps(doc).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _audit(self, scope: Scope, state: MutableMapping[str, Any], status: int) -> None:
        principal: Principal | None = state.get("principal")
        if principal is None and (status not in AUDITED_REFUSALS or state.get("open_data")):
            # public endpoints (health, metrics, dashboard files, open data) are not audited
            return
        entry = AuditEntry(
            ts_ms=self.ctx.clock.now_ms(),
            key_id=principal.id if principal else None,
            key_name=principal.name if principal else None,
            role=principal.role if principal else None,
            client=client_address(scope, self.ctx.settings.api.trusted_proxies),
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            status=status,
            rows=state.get("audit_rows"),
            district=self._district(scope, state, principal),
            resource=resource_of(scope["path"]),
        )
        try:
            record(self.ctx.conn, entry, self.chain_key)
        except sqlite3.Error:
            log.exception("could not write audit record", path=scope["path"])


def _district_of_query(query: bytes) -> str | None:
    values = parse_qs(query.decode("latin-1")).get("district")
    if values and DISTRICT_RE.fullmatch(values[0]):
        return values[0]
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
