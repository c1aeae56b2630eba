"""``GET /api/v1/stream``: server-sent events of alert transitions and device status changes.

Only events inside the key's scope are sent, with the values of metrics the key may
not read withheld (hub.api.visibility). Events are ``event: alert`` or ``event:
device`` with a JSON ``data:`` line; a ``: keepalive`` comment is sent when nothing
happened for a while so proxies keep the connection open.

A stream outlives the request that authenticated it, so it checks its key again
every ``REVALIDATE_S``: once the key is revoked (``hub keys revoke``, possibly from
another process), the stream sends ``: key revoked`` and ends; reconnecting is a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Ctx, Viewer, set_rows
from hub.api.keys import is_active
from hub.api.routing import ApiRoute
from hub.api.visibility import Visibility
from hub.messages import AlertEvent
from hub.ports import StreamEvent

router = APIRouter(tags=["stream"], route_class=ApiRoute)

#: Seconds of silence after which a keepalive comment is sent.
KEEPALIVE_S = 15.0
#: Events one slow client may fall behind by before it loses the oldest.
CLIENT_QUEUE = 1000
#: How often an open stream checks that its key is still valid: docs/api.md promises
#: that revoking a key ends its streams within a second.
REVALIDATE_S = 0.5


def encode(event: StreamEvent, visible: Visibility | None = None) -> str:
    """One event in SSE wire format (alert texts as ``visible`` lets the caller see them)."""
    data: dict[str, Any]
    if isinstance(event, AlertEvent):
        kind = "alert"
        withheld: list[str] = []
        if visible is not None:
            event, withheld = visible.event(event)
        data = {
            "alert_id": event.alert_id,
            "rule_id": event.rule_id,
            "status": str(event.status),
            "severity": event.severity.label,
            "district": event.district,
            "asset_type": event.asset_type,
            "source": event.source,
            "ts_ms": event.ts_ms,
            "summary": event.summary,
            "labels": dict(event.labels),
            "actor": event.actor,
            "comment": event.comment,
            "reopened_from": event.reopened_from,
            "withheld_metrics": withheld,
        }
    else:
        kind = "device"
        data = {
            "device_id": event.device_id,
            "district": event.district,
            "asset_type": event.asset_type,
            "status": event.status,
            "ts_ms": event.ts_ms,
        }
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _allowed(who: Principal, event: StreamEvent) -> bool:
    return who.allows(event.district, event.asset_type)


async def event_source(
    ctx: ApiContext,
    who: Principal,
    keepalive_s: float = KEEPALIVE_S,
    revalidate_s: float = REVALIDATE_S,
) -> AsyncIterator[str]:
    """The SSE body: a ``: connected`` comment once subscribed, then events in scope,
    until the client goes or the key is revoked."""
    queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(CLIENT_QUEUE + 1)
    visible = Visibility(ctx.catalog, who)
    loop = asyncio.get_running_loop()

    async def pump() -> None:
        try:
            async for event in ctx.events.subscribe():
                if not _allowed(who, event):
                    continue
                if queue.qsize() >= CLIENT_QUEUE:
                    queue.get_nowait()  # a slow client loses its oldest event
                queue.put_nowait(event)
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    task = asyncio.create_task(pump(), name="hub.api.stream")
    try:
        await asyncio.sleep(0)  # let the pump subscribe before the client hears "connected"
        yield "retry: 3000\n: connected\n\n"
        checked = quiet_since = loop.time()
        while True:
            now = loop.time()
            if now - checked >= revalidate_s:
                if not is_active(ctx.conn, who.id):
                    yield ": key revoked\n\n"
                    return
                checked = now
            if now - quiet_since >= keepalive_s:
                yield ": keepalive\n\n"
                quiet_since = now
            wait = min(checked + revalidate_s, quiet_since + keepalive_s) - now
            try:
                event = await asyncio.wait_for(queue.get(), max(wait, 0.0))
            except TimeoutError:
                continue
            if event is None:
                return
            quiet_since = loop.time()
            yield encode(event, visible)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
)
async def stream(request: Request, ctx: Ctx, who: Viewer) -> StreamingResponse:
    """Live alert transitions and device status changes inside the key's scope (SSE)."""
    set_rows(request, 0)
    return StreamingResponse(
        event_source(ctx, who),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )
