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
    python3 bench/embedded_broker.py --into-hub --messages 20000 --publishers 2
    python3 bench/embedded_broker.py --into-hub --broker amqtt --messages 20000

``--into-hub`` runs ``hub run`` on its embedded broker (``--broker``: mosquitto,
amqtt or auto) and counts readings stored; readings the publishers got a PUBACK
for that never reach the store are reported as lost, with the broker's
transport errors counted from the hub's log.
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

    seen: dict[tuple[str, int], int] = {}
    first_last = [0.0, 0.0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-hub", clean_session=False)
    client.on_connect = lambda c, *_: c.subscribe("bench/+/+/+/telemetry", qos=1)
    client.on_subscribe = lambda *_: ready.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        key = (msg.topic, json.loads(msg.payload)["seq"])
        seen[key] = seen.get(key, 0) + 1
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


def _publisher(
    port: int,
    total: int,
    devices: int,
    start: mp.Queue,  # type: ignore[type-arg]
    prefix: str = "bench",
    ts_base: int = 1764000000000,
    first_seq: int = 0,
    name: str = "bench-pub",
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    topics = [f"{prefix}/d{i % 20:02d}/air_quality/{name}-{i}/telemetry" for i in range(devices)]
    t0 = time.perf_counter()
    start.put(t0)
    infos = []
    for n in range(total):
        seq = first_seq + n // devices
        payload = (
            f'{{"ts":{ts_base + n},"seq":{seq},"metrics":{{"pm2_5_ug_m3":12.5,'
            f'"pm10_ug_m3":20.1,"no2_ug_m3":31.7,"temperature_c":11.2}}}}'
        )
        infos.append(client.publish(topics[n % devices], payload, qos=1))
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


#: Log lines of the hub that are the in-process broker's transport errors.
_BROKER_ERRORS = ("Timeout waiting for PUBACK", "Task failed", "Error while handling client")


def into_hub(total: int, devices: int, publishers: int, broker: str = "auto") -> None:
    """`hub run` on its embedded broker; rate = points stored / time since first publish."""
    import httpx

    from tests.hubproc import HubProcess
    from tests.services import wait_for

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        hub = HubProcess(
            Path(tmp) / "hub",
            {"HUB_MQTT__URL": "", "HUB_MQTT__EMBEDDED_LISTEN": f"127.0.0.1:{port}",
             "HUB_MQTT__EMBEDDED_BROKER": broker, "HUB_LOG__LEVEL": "WARNING"},
        )  # fmt: skip
        hub.start()
        try:
            wait_for(lambda: hub.health()["checks"]["broker"]["connected"], timeout=30)
            ctx = mp.get_context("spawn")
            start: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            ts_base = int(time.time() * 1000) - total
            share = total // publishers
            procs = [
                ctx.Process(
                    target=_publisher,
                    args=(port, share, devices // publishers, start, "city", ts_base, 0, f"p{i}"),
                )
                for i in range(publishers)
            ]
            for proc in procs:
                proc.start()
            t0 = min(start.get() for _ in procs)

            def accepted() -> float:
                text = httpx.get(f"{hub.url}/metrics", timeout=5).text
                for line in text.splitlines():
                    if line.startswith("hub_store_points_written_total "):
                        return float(line.split()[1])
                return 0.0

            expected = share * publishers
            # Until all arrived, or nothing new for 20 s after the publishers finished
            # (every reading was PUBACKed by then: the rest is lost).
            stored, last_change = 0.0, time.perf_counter()
            t_last = last_change
            while stored < expected:
                now_stored = accepted()
                if now_stored > stored:
                    stored, t_last = now_stored, time.perf_counter()
                    last_change = t_last
                elif (
                    all(not proc.is_alive() for proc in procs)
                    and time.perf_counter() - last_change > 20
                ):
                    break
                time.sleep(0.05)
            for proc in procs:
                proc.join(30)
            log = hub.log_tail(10_000_000)
            errors = sum(log.count(marker) for marker in _BROKER_ERRORS)
            print(
                f"into hub (embedded {broker}): readings={expected} stored={stored:.0f} "
                f"lost={expected - stored:.0f} broker_errors_logged={errors} "
                f"publishers={publishers} rate={stored / (t_last - t0):,.0f} readings/s "
                f"(first publish -> last point in the embedded store)",
                flush=True,
            )
        finally:
            hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--backend", choices=["mosquitto", "amqtt", "both"], default="both")
    parser.add_argument(
        "--publisher", choices=["paho", "c"], default="paho", help="c: mosquitto_pub -l"
    )
    parser.add_argument("--into-hub", action="store_true", help="through `hub run` instead")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="with --into-hub: the hub's embedded broker (HUB_MQTT__EMBEDDED_BROKER)",
    )
    args = parser.parse_args()
    if args.into_hub:
        into_hub(args.messages, args.devices, args.publishers, args.broker)
        return
    backends = ["mosquitto", "amqtt"] if args.backend == "both" else [args.backend]
    for backend in backends:
        asyncio.run(run(backend, args.messages, args.devices, args.publisher))


if __name__ == "__main__":
    main()
