"""In-process event bus feeding the API's live stream (alert transitions, device status).

Publishing never blocks the pipeline: each subscriber has a bounded queue, and a
subscriber that falls behind loses its oldest events (counted), never anyone else's.
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
        self._subscribers: set[asyncio.Queue[StreamEvent]] = set()
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

    async def subscribe(self) -> AsyncIterator[StreamEvent]:
        """Events published from now on, until the consumer stops iterating."""
        queue: asyncio.Queue[StreamEvent] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)
