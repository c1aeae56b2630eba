"""Leases in NATS KV with a TTL: which worker holds a partition, an ingest slot, or is alive.

A lease is a key of the KV bucket ``HUB_LEASES`` (replicated like the stream).
Decisions, and why:

* **Expiry is the bucket's.** The bucket's entries expire ``HUB_CLUSTER__LEASE_TTL_S``
  after they were written (the bucket's max age, fixed when it is created; every
  worker reads it from the bucket, a different setting is logged). A worker that
  dies stops renewing, and its leases are gone one TTL later without anyone having
  to notice it died.
* **Compare and set.** Acquiring creates the key (only if it has no live value);
  renewing and releasing name the revision this worker last wrote. A renewal that
  finds another revision has lost the lease (it expired and someone took it), and
  says so: the holder stops at once.
* **The holder stops early.** A lease is valid for its holder until TTL, less a
  margin, after it *sent* the request that wrote it; the server expires it no
  sooner than TTL after it *stored* it, which is later. So a holder gives a
  partition up before anyone else can take it, measured on its own monotonic
  clock: no synchronised wall clocks needed.
* **Generations.** The revision a lease was acquired with is unique and increasing
  over the whole bucket; the journal names a partition's consumer after it and the
  snapshots are fenced with it, so what a worker wrote under an old lease cannot be
  mistaken for the new owner's.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from hub.clock import Clock
from hub.logging import get_logger

log = get_logger(__name__)

#: The bucket of leases.
BUCKET = "HUB_LEASES"
#: A holder stops using a lease this fraction of the TTL before it would expire
#: (at least MIN_MARGIN_S): covers a renewal in flight and timer lateness.
MARGIN_FRACTION = 0.2
MIN_MARGIN_S = 0.2
#: Seconds a KV request may take before it counts as failed.
REQUEST_TIMEOUT_S = 2.0


class LeaseLost(Exception):
    """The lease expired or another worker holds it now."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"lease {name!r} lost: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease this worker holds."""

    name: str
    worker: str
    #: Revision it was acquired with: unique over the bucket, increasing.
    generation: int
    #: Revision this worker wrote last (renewal and release name it).
    revision: int
    #: Monotonic time until which the holder may act on it.
    valid_until: float
    #: What the holder published with it (roles, for the worker presence lease).
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease, as the bucket says now."""

    name: str
    worker: str
    revision: int
    data: dict[str, Any]


class Leases:
    """Acquire, renew and release leases in the bucket; list who holds what."""

    def __init__(
        self,
        client: Client,
        *,
        worker_id: str,
        ttl_s: float,
        replicas: int,
        clock: Clock,
        bucket: str = BUCKET,
    ) -> None:
        self._nc = client
        self.worker_id = worker_id
        self.ttl_s = ttl_s
        self._replicas = replicas
        self._clock = clock
        self._bucket = bucket
        self._kv: KeyValue | None = None

    async def open(self) -> None:
        """Make the bucket (TTL = lease TTL) or use the one there, with its TTL."""
        js = self._nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        try:
            self._kv = await js.key_value(self._bucket)
        except nats.js.errors.BucketNotFoundError:
            self._kv = await js.create_key_value(
                bucket=self._bucket,
                description="hub leases: partitions, ingest slots, workers",
                history=1,
                ttl=self.ttl_s,
                replicas=self._replicas,
            )
            log.info("lease bucket created", bucket=self._bucket, ttl_s=self.ttl_s)
        status = await self._kv.status()
        ttl = status.ttl
        if ttl and abs(ttl - self.ttl_s) > 1e-3:
            log.warning(
                "the lease bucket's TTL is not HUB_CLUSTER__LEASE_TTL_S; the bucket's is used"
                " (fixed when it was made: docs/scaling.md)",
                bucket=self._bucket,
                bucket_ttl_s=ttl,
                setting=self.ttl_s,
            )
            self.ttl_s = ttl

    @property
    def kv(self) -> KeyValue:
        """The bucket (open first)."""
        if self._kv is None:
            raise RuntimeError("leases are not open; call open() first")
        return self._kv

    @property
    def margin_s(self) -> float:
        """How long before its expiry a holder stops using a lease."""
        return max(MIN_MARGIN_S, self.ttl_s * MARGIN_FRACTION)

    def valid(self, lease: Lease) -> bool:
        """True while the holder may still act on ``lease``."""
        return self._clock.monotonic() < lease.valid_until

    def _value(self, data: dict[str, Any]) -> bytes:
        return json.dumps({"worker": self.worker_id, **data}, separators=(",", ":")).encode()

    async def acquire(self, name: str, data: dict[str, Any] | None = None) -> Lease | None:
        """Take ``name`` if nobody holds it; None if someone does."""
        data = dict(data or {})
        sent = self._clock.monotonic()
        try:
            revision = await self.kv.create(name, self._value(data))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        lease = Lease(
            name=name,
            worker=self.worker_id,
            generation=revision,
            revision=revision,
            valid_until=sent + self.ttl_s - self.margin_s,
            data=data,
        )
        log.debug("lease acquired", lease=name, generation=revision)
        return lease

    async def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by a TTL; raise LeaseLost if it is no longer ours.

        Errors reaching NATS (a timeout) are raised as they are: the lease may still
        be ours, the caller retries while :meth:`valid` says it may.
        """
        if not self.valid(lease):
            raise LeaseLost(lease.name, "not renewed in time")
        sent = self._clock.monotonic()
        try:
            revision = await self.kv.update(
                lease.name, self._value(lease.data), last=lease.revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            raise LeaseLost(lease.name, "expired, or taken by another worker") from None
        return replace(lease, revision=revision, valid_until=sent + self.ttl_s - self.margin_s)

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` up now (if still ours), so another worker can take it at once."""
        try:
            await self.kv.delete(lease.name, last=lease.revision)
        except nats.js.errors.APIError as exc:
            # Not ours any more (wrong last sequence): nothing to give up.
            log.debug("lease release skipped", lease=lease.name, error=str(exc))
        else:
            log.debug("lease released", lease=lease.name)

    async def holders(self) -> dict[str, Holder]:
        """Every lease held now, by name."""
        found: dict[str, Holder] = {}
        watcher = await self.kv.watchall(ignore_deletes=True)
        try:
            # asyncio.timeout, not the watcher's own (wait_for) timeout: 3.11's wait_for
            # can swallow a cancellation that races with the result.
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                async for entry in watcher:
                    if entry is None:  # the end of the current values
                        break
                    if not entry.value:
                        continue
                    try:
                        data = json.loads(entry.value)
                        worker = str(data.pop("worker"))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        log.warning("lease with an unreadable value ignored", lease=entry.key)
                        continue
                    found[entry.key] = Holder(entry.key, worker, int(entry.revision or 0), data)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return found
