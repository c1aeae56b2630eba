"""Receive rate of the hub's MqttSource alone (no decode, no journal).

Starts a real Mosquitto on a free loopback port (tests/services.py), opens an
MqttSource (QoS 1, manual ack, receive-maximum from the settings), and lets
bench/loadgen.py publish N readings while the source takes batches and acks
each batch at once. Prints the receive rate (first to last message) and the
CPU seconds this process spent per 1000 messages (the load generator runs in
other processes).

    python3 bench/ingest_source.py                     # 200,000 messages
    python3 bench/ingest_source.py --messages 50000 --receive-maximum 2000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import publish_readings_async  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.ingest.mqtt_source import MqttSource  # noqa: E402
from hub.settings import MqttSettings  # noqa: E402
from tests.services import Mosquitto  # noqa: E402


async def run(args: argparse.Namespace, broker: Mosquitto) -> dict[str, float]:
    """One measured run; returns the figures."""
    settings = MqttSettings(
        url=broker.url,
        topic_prefix="bench",
        client_id="bench-source",
        receive_maximum=args.receive_maximum,
    )
    async with MqttSource(settings, clock=SystemClock()) as source:
        if not await source.wait_connected(10):
            raise RuntimeError("the source did not connect")
        publishing = asyncio.create_task(
            publish_readings_async(
                broker.url,
                "bench",
                devices=args.devices,
                districts=args.districts,
                total=args.messages,
                processes=args.processes,
            )
        )
        received = batches = 0
        first = await source.next_batch()
        t0 = time.monotonic()
        cpu0 = time.process_time()
        source.ack(first)
        received += len(first)
        while received < args.messages:
            batch = await source.next_batch()
            source.ack(batch)
            received += len(batch)
            batches += 1
        t1 = time.monotonic()
        cpu1 = time.process_time()
        published = await publishing
    n = received - len(first)
    return {
        "received": received,
        "rate": n / max(t1 - t0, 1e-9),
        "cpu_per_1000": (cpu1 - cpu0) / max(n, 1) * 1000,
        "mean_batch": n / max(batches, 1),
        "publish_rate": published["rate"],
    }


def main() -> None:
    """Start Mosquitto, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--districts", type=int, default=8)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--receive-maximum", type=int, default=2000)
    args = parser.parse_args()
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="bench-source-")))
    broker.start()
    try:
        f = asyncio.run(run(args, broker))
    finally:
        broker.stop()
    print(
        f"MqttSource received {f['received']:,.0f} QoS 1 messages at {f['rate']:,.0f} msgs/s "
        f"(publisher {f['publish_rate']:,.0f} msgs/s), CPU {f['cpu_per_1000']:.3f} s per 1000 "
        f"messages, mean batch {f['mean_batch']:.0f}, receive-maximum {args.receive_maximum}"
    )


if __name__ == "__main__":
    main()
