"""Embedded broker benchmark: sustained QoS 1 rate through each backend, and correctness.

A paho publisher (QoS 1, ~120-byte JSON readings, several devices' topics) and a
paho consumer with a persistent session (clean session off, QoS 1), both in their
own processes, go through the hub's EmbeddedBroker (Mosquitto child, or amqtt
in-process in this benchmark's own event loop, as in the hub). Prints per backend:
rate (first publish -> last message received), lost, duplicated, and the
broker's peak RSS. A Python paho publisher tops out near 8-14k msgs/s here, so
for Mosquitto the figure is a floor set by the publisher, not the broker.

    python3 bench/embedded_broker.py                       # both backends, 100,000 messages
    python3 bench/embedded_broker.py --messages 20000 --backend amqtt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.broker import EmbeddedBroker  # noqa: E402
from hub.settings import MqttSettings  # noqa: E402
from tests.services import free_port  # noqa: E402


def _consumer(port: int, total: int, ready: mp.Event, done: mp.Queue) -> None:  # type: ignore[type-arg]
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen: dict[int, int] = {}
    first_last = [0.0, 0.0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-hub", clean_session=False)
    client.on_connect = lambda c, *_: c.subscribe("bench/+/+/+/telemetry", qos=1)
    client.on_subscribe = lambda *_: ready.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        seq = json.loads(msg.payload)["seq"]
        seen[seq] = seen.get(seq, 0) + 1
        now = time.perf_counter()
        if not first_last[0]:
            first_last[0] = now
        first_last[1] = now

    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    deadline = time.monotonic() + 600
    while len(seen) < total and time.monotonic() < deadline:
        time.sleep(0.05)
        if first_last[1] and time.perf_counter() - first_last[1] > 20:
            break  # nothing for 20 s: the rest is lost
    dups = sum(n - 1 for n in seen.values())
    done.put((len(seen), dups, first_last[1]))
    client.disconnect()
    client.loop_stop()


def _publisher(port: int, total: int, devices: int, start: mp.Queue) -> None:  # type: ignore[type-arg]
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    topics = [f"bench/d{i % 20:02d}/air_quality/aq-{i}/telemetry" for i in range(devices)]
    t0 = time.perf_counter()
    start.put(t0)
    infos = []
    for seq in range(total):
        payload = (
            f'{{"ts":{1764000000000 + seq},"seq":{seq},"metrics":{{"pm2_5_ug_m3":12.5,'
            f'"pm10_ug_m3":20.1,"no2_ug_m3":31.7,"temperature_c":11.2}}}}'
        )
        infos.append(client.publish(topics[seq % devices], payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _c_publisher(port: int, total: int, start: mp.Queue) -> None:  # type: ignore[type-arg]
    """Mosquitto's own C client (``mosquitto_pub -l``), one topic: not the bottleneck."""
    import subprocess

    lines = "".join(
        f'{{"ts":{1764000000000 + seq},"seq":{seq},"metrics":{{"pm2_5_ug_m3":12.5,'
        f'"pm10_ug_m3":20.1,"no2_ug_m3":31.7,"temperature_c":11.2}}}}\n'
        for seq in range(total)
    ).encode()
    start.put(time.perf_counter())
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-l",
            "-t",
            "bench/d01/air_quality/aq-0/telemetry",
        ],
        input=lines,
        check=True,
    )


async def run(backend: str, total: int, devices: int, publisher_kind: str = "paho") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = MqttSettings(embedded_listen=f"127.0.0.1:{port}")
        async with EmbeddedBroker(settings, Path(tmp), backend=backend) as broker:  # type: ignore[arg-type]
            proc = psutil.Process(broker.pid) if broker.pid else psutil.Process()
            ctx = mp.get_context("spawn")
            ready, done, start = ctx.Event(), ctx.Queue(), ctx.Queue()
            consumer = ctx.Process(target=_consumer, args=(port, total, ready, done))
            consumer.start()
            while not ready.is_set():  # noqa: ASYNC110 (a multiprocessing event)
                await asyncio.sleep(0.05)
            if publisher_kind == "c":
                publisher = ctx.Process(target=_c_publisher, args=(port, total, start))
            else:
                publisher = ctx.Process(target=_publisher, args=(port, total, devices, start))
            publisher.start()
            peak = 0
            while done.empty():
                peak = max(peak, proc.memory_info().rss)
                await asyncio.sleep(0.2)
            received, dups, t_last = done.get()
            t0 = start.get()
            publisher.join(30)
            consumer.join(30)
            rate = received / (t_last - t0) if t_last > t0 else 0.0
            print(
                f"{backend:9s} publisher={publisher_kind} messages={total} "
                f"received={received} lost={total - received} "
                f"duplicated={dups} rate={rate:,.0f} msgs/s broker_peak_rss={peak / 2**20:.0f} MB"
                + (" (shared with the benchmark process)" if broker.pid is None else ""),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--backend", choices=["mosquitto", "amqtt", "both"], default="both")
    parser.add_argument(
        "--publisher", choices=["paho", "c"], default="paho", help="c: mosquitto_pub -l"
    )
    args = parser.parse_args()
    backends = ["mosquitto", "amqtt"] if args.backend == "both" else [args.backend]
    for backend in backends:
        asyncio.run(run(backend, args.messages, args.devices, args.publisher))


if __name__ == "__main__":
    main()
