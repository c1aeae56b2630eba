"""In-process event bus feeding the API's live stream (alert transitions, device status).

Publishing never blocks the pipeline: each subscriber has a bounded queue, and a
subscriber that falls behind loses its oldest events (counted), never anyone else's.
Closing the bus (the hub is stopping) ends every subscription, so live streams finish
their responses and the web server stops without waiting for them or cancelling them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from hub.ports import StreamEvent

#: Events a slow subscriber may fall behind by before it loses the oldest.
SUBSCRIBER_QUEUE = 1000


class EventBus:
    """Fan-out of stream events to any number of live subscribers."""

    def __init__(self, queue_size: int = SUBSCRIBER_QUEUE) -> None:
        self._queue_size = queue_size
        # None in a queue is the end of the subscription (close()).
        self._subscribers: set[asyncio.Queue[StreamEvent | None]] = set()
        self._closed = False
        self.dropped = 0

    def publish(self, event: StreamEvent) -> None:
        """Hand ``event`` to every subscriber; never blocks."""
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                    self.dropped += 1
            queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        """How many subscribers are listening."""
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription, now and to come: the hub is stopping."""
        self._closed = True
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(None)

    async def subscribe(self) -> AsyncIterator[StreamEvent]:
        """Events published from now on, until the consumer stops iterating or the bus
        is closed."""
        if self._closed:
            return
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(queue)
