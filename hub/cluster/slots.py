"""Ingest slots: the MQTT sessions the ingest workers of a cluster share.

The broker hands each device message to one member of a shared subscription
(``$share/<HUB_CLUSTER__SHARE_GROUP>/...``). Each member is a persistent session
with its own client id, and a broker keeps queuing a member's share while its
session is away (Mosquitto does, for as long as the session lives), so a session
is not a worker's: there are ``HUB_CLUSTER__INGEST_SLOTS`` slots, slot *n* the
session ``<HUB_MQTT__CLIENT_ID>-slot<n>``, each held by one ingest worker under a
lease (:mod:`hub.cluster.pool`). A worker runs one :class:`MqttSource` per slot it
holds; when a worker dies, its slots' leases expire and the survivors take them,
connect with those client ids and drain what the broker queued for them: nothing
waits for the dead process to come back. The broker itself refuses two
connections with one client id (the newer takes the session over), so a worker
that lost a slot without knowing cannot keep receiving its messages.

:class:`IngestSlots` merges the sessions into the one stream of batches the
runtime's ingest reads (``next_batch``/``ack``, as :class:`MqttSource`); a batch
is acknowledged on the session it came from. A slot given up (handed over to a
worker that joined) first waits for its batches in flight to be acknowledged,
then disconnects, keeping the session: the broker redelivers whatever was not
acknowledged to the slot's next holder.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.clock import Clock
from hub.cluster.leases import Lease
from hub.ingest.mqtt_source import MqttSource, shared_subscriptions
from hub.logging import get_logger
from hub.messages import RawMessage
from hub.settings import MqttSettings

log = get_logger(__name__)

#: Prefix of the slot leases (``slot.0`` ...).
SLOT_PREFIX = "slot."
#: A slot handed over waits at most this long for its batches in flight to be acknowledged.
RELEASE_WAIT_S = 10.0


def slot_names(slots: int) -> list[str]:
    """The lease names of ``slots`` ingest slots."""
    return [f"{SLOT_PREFIX}{n}" for n in range(slots)]


def slot_client_id(base: str, slot: int) -> str:
    """The MQTT client id of ingest slot ``slot``: stable, so a survivor resumes its session."""
    return f"{base}-slot{slot}"


@dataclass(eq=False)
class _Session:
    name: str
    source: MqttSource
    pump: asyncio.Task[None] | None = None
    in_flight: int = 0  # batches handed out, not yet acknowledged
    closing: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    taken: asyncio.Event = field(default_factory=asyncio.Event)


class IngestSlots:
    """This worker's ingest sessions, one per slot it holds, read as one source."""

    def __init__(
        self,
        mqtt: MqttSettings,
        *,
        clock: Clock,
        subscriptions: Sequence[str],
        group: str,
    ) -> None:
        self._mqtt = mqtt
        self._clock = clock
        self._subscriptions = shared_subscriptions(subscriptions, group)
        self._sessions: dict[str, _Session] = {}
        self._ready: deque[tuple[_Session, list[RawMessage]]] = deque()
        self._wakeup = asyncio.Event()
        self._origin: dict[int, tuple[_Session, list[RawMessage]]] = {}

    # ------------------------------------------------------------------ the source

    @property
    def connected(self) -> bool:
        """True while every held slot's session is up (and at least one is held)."""
        return bool(self._sessions) and all(s.source.connected for s in self._sessions.values())

    @property
    def held(self) -> list[str]:
        """The slots this worker holds now."""
        return sorted(self._sessions)

    def client_ids(self) -> dict[str, str]:
        """Each held slot's MQTT client id."""
        return {name: slot_client_id(self._mqtt.client_id, _slot(name)) for name in self._sessions}

    async def next_batch(self) -> list[RawMessage]:
        """The next batch of any held session (waits while there is none)."""
        while True:
            while not self._ready:
                self._wakeup.clear()
                await self._wakeup.wait()
            session, batch = self._ready.popleft()
            session.taken.set()
            if session.closing:
                continue  # never journaled, never acknowledged: the broker redelivers it
            session.in_flight += 1
            self._origin[id(batch)] = (session, batch)
            return batch

    def ack(self, batch: Sequence[RawMessage]) -> None:
        """Acknowledge ``batch`` on the session it came from."""
        found = self._origin.pop(id(batch), None)
        if found is None:
            return
        session, _ = found
        session.source.ack(batch)
        session.in_flight -= 1
        if session.in_flight == 0:
            session.settled.set()

    # ------------------------------------------------------------------ the pool's callbacks

    async def on_acquired(self, lease: Lease) -> None:
        """A slot taken: connect its session (the broker delivers what it queued for it)."""
        slot = _slot(lease.name)
        settings = self._mqtt.model_copy(
            update={"client_id": slot_client_id(self._mqtt.client_id, slot)}
        )
        source = MqttSource(settings, clock=self._clock, subscriptions=self._subscriptions)
        await source.__aenter__()
        session = _Session(lease.name, source)
        session.pump = asyncio.create_task(self._pump(session), name=f"hub.ingest.{lease.name}")
        self._sessions[lease.name] = session
        log.info("ingest slot taken", slot=lease.name, client_id=settings.client_id)

    async def on_release(self, lease: Lease) -> None:
        """A slot handed over: let its batches in flight be acknowledged, then disconnect."""
        session = self._sessions.get(lease.name)
        if session is None:
            return
        await self._stop_pump(session)
        if session.in_flight:
            session.settled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELEASE_WAIT_S):
                    await session.settled.wait()
        await self._close(session)
        log.info("ingest slot handed over", slot=lease.name)

    async def on_lost(self, lease: Lease) -> None:
        """A slot lost: disconnect now (what was not acknowledged goes to its next holder)."""
        session = self._sessions.get(lease.name)
        if session is not None:
            await self._stop_pump(session)
            await self._close(session)

    async def aclose(self) -> None:
        """Disconnect every session (each kept by the broker for the slot's next holder)."""
        for session in list(self._sessions.values()):
            await self._stop_pump(session)
            await self._close(session)

    # ------------------------------------------------------------------ internals

    async def _pump(self, session: _Session) -> None:
        source = session.source
        while True:
            batch = await source.next_batch()
            # Back-pressure: the source reads on only once the ingest took this batch.
            session.taken.clear()
            self._ready.append((session, batch))
            self._wakeup.set()
            await session.taken.wait()

    async def _stop_pump(self, session: _Session) -> None:
        session.closing = True
        if session.pump is not None:
            session.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.pump
            session.pump = None

    async def _close(self, session: _Session) -> None:
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
        for key, (owner, _) in list(self._origin.items()):
            if owner is session:
                del self._origin[key]
        with contextlib.suppress(Exception):
            await session.source.__aexit__(None, None, None)


def _slot(name: str) -> int:
    return int(name.removeprefix(SLOT_PREFIX))
