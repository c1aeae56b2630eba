"""A worker's fair share of a fixed set of leases: the partitions, or the ingest slots.

Every worker with a role (``live`` for partitions, ``ingest`` for slots) runs one
:class:`LeasePool` per set. Each worker holds a lease ``worker.<id>`` saying it is
alive and which roles it has (:class:`Membership`, renewed and read every third of
the TTL); from those, every worker computes the same fair share,
``ceil(items / workers with the role)``, and:

* renews what it holds every third of the TTL (its own task, so a slow takeover
  never delays a renewal); a lease it fails to renew in time is *lost*: the pool
  calls ``on_lost`` at once, and the work it guarded stops without a checkpoint
  (``on_lost`` may come while that work is still starting or stopping);
* takes free items while it holds fewer than its share, calling ``on_acquired``
  (the work starts: a partition restores its snapshot, a slot connects), once it
  sees itself among the workers (so a starting worker does not take everything);
* gives items back while it holds more than its share (a worker joined), calling
  ``on_release`` first (the work checkpoints and stops), then deleting the lease,
  so the newcomer takes it at once.

So a dead worker's items are free within one TTL of its last renewal and taken
within a third of a TTL more: a takeover takes at most about 1.4 TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable, Sequence

from hub.cluster.leases import Holder, Lease, LeaseLost, Leases
from hub.logging import get_logger
from hub.natsclient import still_running

log = get_logger(__name__)

#: Renewals and balancing run this often, as a fraction of the TTL.
PERIOD_FRACTION = 1 / 3
#: Prefix of the worker presence leases.
WORKER_PREFIX = "worker."

Callback = Callable[[Lease], Awaitable[None]]


def fair_share(items: int, workers: int) -> int:
    """How many of ``items`` one of ``workers`` workers holds at most."""
    return math.ceil(items / max(1, workers))


class Membership:
    """This worker's presence lease, and the view of every worker's (run it: :meth:`run`)."""

    def __init__(self, leases: Leases, roles: Sequence[str]) -> None:
        self.leases = leases
        self.roles = sorted(set(roles))
        self._lease: Lease | None = None
        self._view: dict[str, Holder] = {}
        self._seen = asyncio.Event()
        self._waiting_said = False
        self._present_views = 0
        self._settled = False

    @property
    def key(self) -> str:
        """This worker's presence lease."""
        return f"{WORKER_PREFIX}{self.leases.worker_id}"

    @property
    def period_s(self) -> float:
        """How often the presence is renewed and the view refreshed."""
        return self.leases.ttl_s * PERIOD_FRACTION

    async def run(self) -> None:
        """Beat every period until cancelled."""
        while True:
            still_running()
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS unreachable for now: the next period retries
                log.warning("worker presence not renewed; retrying", error=str(exc))
            await asyncio.sleep(self.period_s)

    async def beat(self) -> None:
        """Acquire or renew the presence lease, then refresh the view of who holds what."""
        try:
            if self._lease is None:
                self._lease = await self.leases.acquire(self.key, {"roles": self.roles})
                if self._lease is None and not self._waiting_said:
                    # A restart within a TTL of a crash: the old presence has to expire.
                    self._waiting_said = True
                    log.warning(
                        "a live worker holds this worker id (HUB_CLUSTER__WORKER_ID); waiting"
                        " for its presence lease to expire",
                        worker=self.leases.worker_id,
                    )
            else:
                self._lease = await self.leases.renew(self._lease)
        except LeaseLost:
            self._lease = None
        self._view = await self.leases.holders()
        self._settled = self._lease is not None and self._present_views >= 1
        self._present_views = self._present_views + 1 if self._lease is not None else 0
        self._seen.set()

    @property
    def settled(self) -> bool:
        """True once this worker has been present for a whole period: workers that
        started with it have announced themselves by then, so its share is right."""
        return self._settled

    async def wait_view(self) -> None:
        """Wait for the first view of the workers."""
        await self._seen.wait()

    @property
    def view(self) -> dict[str, Holder]:
        """The leases held, as last seen."""
        return self._view

    def workers(self, role: str) -> list[str]:
        """Live workers with ``role``, as last seen (this one included once it beat)."""
        return sorted(
            h.worker
            for name, h in self._view.items()
            if name.startswith(WORKER_PREFIX) and role in h.data.get("roles", ())
        )

    async def leave(self) -> None:
        """Release the presence lease (a clean stop)."""
        if self._lease is not None:
            await self.leases.release(self._lease)
            self._lease = None


class LeasePool:
    """This worker's fair share of the leases ``names`` (see the module docstring)."""

    def __init__(
        self,
        membership: Membership,
        names: Sequence[str],
        *,
        role: str,
        on_acquired: Callback,
        on_lost: Callback,
        on_release: Callback,
    ) -> None:
        self.membership = membership
        self.leases = membership.leases
        self.names = list(names)
        self.role = role
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._on_release = on_release
        self.held: dict[str, Lease] = {}
        # One balancing at a time (it may wait on slow work starting or stopping)...
        self._lock = asyncio.Lock()
        # ...and renewals never race a release (both name the latest revision); held
        # only for the requests, never across the callbacks.
        self._kv_lock = asyncio.Lock()

    @property
    def period_s(self) -> float:
        """How often it renews and rebalances."""
        return self.leases.ttl_s * PERIOD_FRACTION

    async def run(self) -> None:
        """Renew and balance until cancelled (then the held leases are simply dropped)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._renew_loop(), name=f"hub.cluster.{self.role}.renew")
            tg.create_task(self._balance_loop(), name=f"hub.cluster.{self.role}.balance")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            still_running()
            await self.renew()

    async def _balance_loop(self) -> None:
        await self.membership.wait_view()
        while True:
            still_running()
            try:
                await self.balance()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS unreachable for now: the next period retries
                log.warning("lease balancing failed; retrying", role=self.role, error=str(exc))
            await asyncio.sleep(self.period_s)

    async def renew(self) -> None:
        """Renew every held lease; the ones lost are given up at once (``on_lost``)."""
        lost: list[tuple[Lease, BaseException]] = []
        async with self._kv_lock:
            names = list(self.held)
            results = await asyncio.gather(
                *(self.leases.renew(self.held[n]) for n in names), return_exceptions=True
            )
            for name, result in zip(names, results, strict=True):
                lease = self.held[name]
                if isinstance(result, Lease):
                    self.held[name] = result
                elif isinstance(result, LeaseLost) or not self.leases.valid(lease):
                    del self.held[name]
                    lost.append((lease, result))
                else:  # NATS not reached; still valid for a while: retried next period
                    log.warning("lease renewal failed; retrying", lease=name, error=str(result))
        for lease, error in lost:
            log.error(
                "lease lost; its work stops",
                lease=lease.name,
                worker=self.leases.worker_id,
                error=str(error),
            )
            await self._on_lost(lease)

    async def balance(self) -> None:
        """Take free items up to the fair share, give back what is beyond it."""
        async with self._lock:
            workers = self.membership.workers(self.role)
            if not self.membership.settled or self.leases.worker_id not in workers:
                return  # not counted yet: taking a share now could take too much
            share = fair_share(len(self.names), len(workers))
            while len(self.held) > share:
                name = max(self.held, key=self.names.index)
                log.info("lease handed over", lease=name, share=share, workers=len(workers))
                try:
                    # Renewals go on meanwhile: the work checkpoints under a valid lease.
                    await self._on_release(self.held[name])
                finally:
                    await self._give_back(name)
            view = self.membership.view
            free = [n for n in self.names if n not in view and n not in self.held]
            random.shuffle(free)  # workers starting together spread over the items
            for name in free:
                if len(self.held) >= share:
                    break
                taken = await self.leases.acquire(name)
                if taken is None:
                    continue
                async with self._kv_lock:
                    self.held[name] = taken
                log.info("lease taken", lease=name, generation=taken.generation)
                try:
                    await self._on_acquired(taken)
                except Exception:
                    log.exception("work could not start under a lease; giving it back", lease=name)
                    await self._give_back(name)

    async def _give_back(self, name: str) -> None:
        """Release ``name`` with the revision last renewed (none renews it meanwhile)."""
        async with self._kv_lock:
            lease = self.held.pop(name, None)
            if lease is not None:
                await self.leases.release(lease)

    async def release_all(self) -> None:
        """A clean stop: hand everything over (``on_release``, then the leases)."""
        async with self._lock:
            for name, lease in list(self.held.items()):
                with contextlib.suppress(Exception):
                    await self._on_release(lease)
                await self._give_back(name)
