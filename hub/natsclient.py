"""The hub's connection to NATS (cluster mode): the one place a NATS client is made.

nats-py, one connection per worker, shared by the JetStream journal
(:mod:`hub.journal.jetstream`), the leases and the rule-state snapshots
(:mod:`hub.cluster`). The client is given every server of the cluster
(``HUB_NATS__URL``), reconnects by itself for ever and buffers what is
published meanwhile; what must not be lost (readings, leases) waits for the
stream's acknowledgement, which is retried by the caller.

The first connection is retried the same way: a worker started while NATS is
still coming up waits for it instead of dying. Connection errors are logged at
most every ``ERROR_LOG_EVERY_S`` (the client retries every half second).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client

from hub.logging import get_logger
from hub.redact import redact_url
from hub.settings import NatsSettings

log = get_logger(__name__)

#: Between two reconnect attempts to the same server (the client cycles through all).
RECONNECT_WAIT_S = 0.5
#: A connection attempt (TCP and TLS handshake) gives up after this long.
CONNECT_TIMEOUT_S = 2
#: A NATS outage is said once, then again at most this often while it lasts.
ERROR_LOG_EVERY_S = 30.0


def still_running() -> None:
    """Raise CancelledError if the current task was cancelled.

    nats-py waits for its answers with 3.11's ``asyncio.wait_for``, which can swallow a
    cancellation that races with the answer; loops around nats-py calls check here at
    every turn, so a stopping hub always stops them.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def servers_for_log(settings: NatsSettings) -> str:
    """The configured servers, passwords masked, for messages."""
    return ",".join(redact_url(url) for url in settings.url)


async def connect(settings: NatsSettings, *, name: str) -> Client:
    """A connected client for ``settings``; waits (retrying) until a server answers."""
    if not settings.url:
        raise ValueError("HUB_NATS__URL is empty: cluster mode needs the NATS servers")
    tls: ssl.SSLContext | None = None
    if any(urlsplit(url).scheme == "tls" for url in settings.url):
        tls = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file is not None else None
        )
    where = servers_for_log(settings)

    last_logged = [-ERROR_LOG_EVERY_S]

    async def on_error(exc: Exception) -> None:
        now = time.monotonic()
        if now - last_logged[0] >= ERROR_LOG_EVERY_S:
            last_logged[0] = now
            log.warning("NATS connection error", servers=where, error=str(exc) or repr(exc))

    made: list[Client] = []

    async def on_disconnected() -> None:
        if made and (made[0].is_closed or made[0].is_draining):
            return  # closed by us
        log.warning("lost NATS; reconnecting", servers=where)

    async def on_reconnected() -> None:
        last_logged[0] = -ERROR_LOG_EVERY_S
        log.info("reconnected to NATS", servers=where)

    # max_reconnect_attempts=-1: the first connection too is retried until a server
    # answers (or the caller is cancelled).
    client = await nats.connect(
        servers=list(settings.url),
        name=name,
        tls=tls,
        connect_timeout=CONNECT_TIMEOUT_S,
        reconnect_time_wait=RECONNECT_WAIT_S,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    made.append(client)
    url = client.connected_url
    server = f"{url.hostname}:{url.port}" if url is not None else ""
    log.info("connected to NATS", servers=where, server=server)
    return client
