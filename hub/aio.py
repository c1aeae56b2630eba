"""Small asyncio helpers shared by the stages that talk to brokers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any


def in_daemon_thread(
    loop: asyncio.AbstractEventLoop, call: Callable[[], Any], name: str
) -> asyncio.Future[Any]:
    """Run the blocking ``call`` in a daemon thread; its result arrives as a loop future.

    Not the loop's default executor: ``asyncio.run`` waits for that executor's
    threads on exit, so a hub stopped while connecting to an unreachable broker
    would wait out the TCP connect timeout (5 s) before exiting.
    """
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            outcome: tuple[bool, Any] = (True, call())
        except Exception as exc:
            outcome = (False, exc)
        # A closed loop: the hub has stopped, and the process exits with the socket.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
