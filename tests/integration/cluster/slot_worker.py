"""An ingest worker reduced to its slots, for the takeover test: holds its share of the
ingest slots, appends every payload it receives to a file (fsynced) and only then
acknowledges it, as the real ingest does with the journal. Run as
``python -m tests.integration.cluster.slot_worker --help``; killed with SIGKILL."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import nats

from hub.clock import SystemClock
from hub.cluster.leases import Lease, Leases
from hub.cluster.pool import LeasePool, Membership
from hub.cluster.slots import IngestSlots, slot_names
from hub.ingest.topics import subscriptions
from hub.settings import MqttSettings


async def main(args: argparse.Namespace) -> None:
    clock = SystemClock()
    nc = await nats.connect([args.nats])
    leases = Leases(
        nc, worker_id=args.worker, ttl_s=args.ttl, replicas=1, clock=clock, bucket=args.bucket
    )
    await leases.open()
    mqtt = MqttSettings(
        url=args.mqtt, topic_prefix=args.prefix, client_id=args.client_id, reconnect_min_s=0.05
    )
    slots = IngestSlots(mqtt, clock=clock, subscriptions=subscriptions(args.prefix), group="g")

    async def acquired(lease: Lease) -> None:
        await slots.on_acquired(lease)
        print(f"holding {lease.name}", flush=True)

    membership = Membership(leases, ["ingest"])
    pool = LeasePool(
        membership,
        slot_names(args.slots),
        role="ingest",
        on_acquired=acquired,
        on_lost=slots.on_lost,
        on_release=slots.on_release,
    )
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(membership.run())
        tg.create_task(pool.run())
        while True:
            batch = await slots.next_batch()
            os.write(fd, b"".join(m.payload + b"\n" for m in batch))
            os.fsync(fd)
            slots.ack(batch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("nats", "mqtt", "bucket", "prefix", "out", "worker", "client-id"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--ttl", type=float, default=1.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
