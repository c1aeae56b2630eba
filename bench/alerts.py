"""Alert storm benchmark: N alerts across M incidents through AlertManager.handle with
the MQTT notifier against a real Mosquitto; a subscriber measures what arrives.

Prints: alerts opened, notifications sent, duplicates (must be 0), and alert
latency p50/p99 from each alert's synthetic ``reading_received_ms`` (stamped just
before ``handle``) to the MQTT alert event received by the subscriber.

    python3 bench/alerts.py                      # 10,000 alerts, 200 incidents
    python3 bench/alerts.py --alerts 2000 --incidents 40 --batch 50
    python3 bench/alerts.py --background-rate 5000   # plus telemetry load on the broker

``--background-rate`` publishes that many telemetry readings/s to the broker from
another thread (the broker and CPU load only; the full-pipeline figure comes from
running the hub itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hub.clock import SystemClock
from hub.messages import Explanation, RuleEvent, RuleState, Severity
from hub.responders import build_alert_manager
from hub.settings import AlertsSettings, MqttSettings, Settings
from hub.sqlite import connect
from tests.services import Mosquitto

PREFIX = "bench"
DISTRICTS = [f"d{i:02d}" for i in range(1, 9)]
ROUTES = """
receivers: [{name: mqtt, mqtt: {}}]
grouping: {by: [district, asset_type, zone], window: 30m}
route: {receivers: [mqtt], group_wait: 0s, repeat_interval: 4h}
"""


def _subscribe(port: int, out: str, ready: Any, stop: Any) -> None:
    """Subscriber process: appends ``arrival_ms<TAB>payload`` per alert event to ``out``."""
    with open(out, "a", buffering=1) as sink:

        def on_connect(client: paho.Client, *_: object) -> None:
            client.subscribe(f"{PREFIX}/alerts/+/+", qos=1)
            ready.set()

        def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
            sink.write(f"{time.time_ns() // 1_000_000}\t{msg.payload.decode()}\n")

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
        client.on_connect = on_connect
        client.on_message = on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        stop.wait()
        client.loop_stop()
        client.disconnect()


class Subscriber:
    """The measuring subscriber, in its own process so it takes no GIL from the hub."""

    def __init__(self, port: int, out: Path) -> None:
        self.out = out
        out.write_text("")
        self._ready = multiprocessing.Event()
        self._stop = multiprocessing.Event()
        self._proc = multiprocessing.Process(
            target=_subscribe, args=(port, str(out), self._ready, self._stop), daemon=True
        )
        self._proc.start()
        if not self._ready.wait(10):
            raise RuntimeError("subscriber did not connect")

    def count(self) -> int:
        with self.out.open("rb") as f:
            return sum(1 for _ in f)

    def received(self) -> list[tuple[int, dict[str, Any]]]:
        rows = []
        for line in self.out.read_text().splitlines():
            arrived, _, payload = line.partition("\t")
            rows.append((int(arrived), json.loads(payload)))
        return rows

    def stop(self) -> None:
        self._stop.set()
        self._proc.join(10)


def background_load(port: int, rate: int, stop: Any) -> None:
    """Publish ``rate`` telemetry readings/s (QoS 1) until ``stop`` (another process)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-load")
    client.connect("127.0.0.1", port)
    client.loop_start()
    n = 0
    start = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while n < due:
            payload = json.dumps(
                {"ts": time.time_ns() // 1_000_000, "metrics": {"pressure_bar": 4.2}}
            )
            client.publish(f"{PREFIX}/d01/water_main/wm-{n % 1000}/telemetry", payload, qos=1)
            n += 1
        time.sleep(0.005)
    client.loop_stop()
    client.disconnect()


def storm(alerts: int, incidents: int) -> list[RuleEvent]:
    """``alerts`` firing events spread evenly over ``incidents`` (district, zone) groups."""
    zones = max(1, incidents // len(DISTRICTS))
    events = []
    for i in range(alerts):
        group = i % incidents
        district = DISTRICTS[group % len(DISTRICTS)]
        zone = f"z{group // len(DISTRICTS):03d}"
        assert group // len(DISTRICTS) < zones or incidents % len(DISTRICTS)
        events.append(
            RuleEvent(
                rule_id="pressure-low",
                rule_version="v1",
                state=RuleState.FIRING,
                severity=Severity.CRITICAL,
                district=district,
                asset_type="water_main",
                source=f"wm-{i:05d}",
                ts_ms=0,
                explanation=Explanation(summary="pressure 1.1 bar < 2.0 bar", threshold=2.0),
                labels={"zone": zone},
            )
        )
    return events


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    broker = Mosquitto(work / "mosquitto", extra_conf=args.broker_conf)
    broker.start()
    stop_load = multiprocessing.Event()
    loader: multiprocessing.Process | None = None
    if args.background_rate > 0:
        loader = multiprocessing.Process(
            target=background_load, args=(broker.port, args.background_rate, stop_load), daemon=True
        )
        loader.start()
    sub = Subscriber(broker.port, work / "received.tsv")
    routes = work / "routes.yaml"
    routes.write_text(ROUTES)
    settings = Settings(
        data_dir=work,
        mqtt=MqttSettings(topic_prefix=PREFIX, client_id="bench-hub"),
        alerts=AlertsSettings(routes_path=str(routes)),
    )
    conn: sqlite3.Connection = connect(work / "hub.db")
    manager = build_alert_manager(
        settings,
        conn,
        clock=SystemClock(),
        on_event=lambda _e: None,
        locate=lambda _s: None,
        mqtt_url=broker.url,
    )
    worker = asyncio.create_task(manager.run())
    events = storm(args.alerts, args.incidents)
    received_ms: dict[str, int] = {}
    interval = args.batch / args.rate if args.rate > 0 else 0.0
    t0 = time.perf_counter()
    handle_s = 0.0
    for start in range(0, len(events), args.batch):
        batch = []
        now = time.time_ns() // 1_000_000
        for ev in events[start : start + args.batch]:
            stamped = RuleEvent(
                **{**{f: getattr(ev, f) for f in ev.__slots__}, "reading_received_ms": now}
            )  # type: ignore[attr-defined]
            received_ms[ev.source] = now
            batch.append(stamped)
        h0 = time.perf_counter()
        await manager.handle(batch)
        handle_s += time.perf_counter() - h0
        if interval:
            await asyncio.sleep(
                max(0.0, t0 + (start // args.batch + 1) * interval - time.perf_counter())
            )
        else:
            await asyncio.sleep(0)  # let the delivery worker run between batches
    deadline = time.monotonic() + args.timeout
    # Polling: the subscriber is another thread and the outbox is in SQLite.
    while time.monotonic() < deadline and (  # noqa: ASYNC110
        sub.count() < len(events) or manager.pending_notifications()
    ):
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    await manager.close()

    got = sub.received()
    ids = Counter(str(p["notification_id"]) for _, p in got)
    firing_per_alert = Counter(str(p["alert_id"]) for _, p in got if p.get("event") == "firing")
    latencies = [
        (arrived - received_ms[str(p["source"])])
        for arrived, p in got
        if p.get("event") == "firing"
    ]
    (opened,) = conn.execute("SELECT COUNT(*) FROM alerts").fetchone()
    (n_incidents,) = conn.execute("SELECT COUNT(*) FROM incidents").fetchone()
    (sent,) = conn.execute("SELECT COUNT(*) FROM notify_log WHERE outcome = 'sent'").fetchone()
    sub.stop()
    stop_load.set()
    if loader is not None:
        loader.join(5)
    broker.stop()
    conn.close()

    print(f"alerts opened:            {opened}")
    print(f"incidents:                {n_incidents}")
    print(f"notifications sent (log): {sent}")
    print(f"MQTT events received:     {len(got)}")
    print(
        f"duplicates:               {sum(c - 1 for c in ids.values() if c > 1)}"
        f" (alerts with >1 firing event: {sum(1 for c in firing_per_alert.values() if c > 1)})"
    )
    print(f"missing:                  {len(events) - len(firing_per_alert)}")
    if latencies:
        print(
            f"latency ms (reading -> MQTT event): p50 {percentile(latencies, 50):.1f}"
            f"  p99 {percentile(latencies, 99):.1f}  max {max(latencies):.1f}"
            f"  mean {statistics.fmean(latencies):.1f}"
        )
    print(
        f"storm wall time:          {elapsed:.2f} s  (handle: {handle_s:.2f} s,"
        f" {len(events) / max(handle_s, 1e-9):.0f} alerts/s)"
    )
    print(
        f"batch {args.batch}, rate {'max' if args.rate <= 0 else args.rate}/s,"
        f" background {args.background_rate} readings/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100, help="rule events per handle() call")
    parser.add_argument(
        "--rate", type=float, default=0, help="alerts/s to feed (0: as fast as possible)"
    )
    parser.add_argument(
        "--background-rate", type=int, default=0, help="telemetry readings/s on the broker"
    )
    parser.add_argument(
        "--broker-conf",
        default="autosave_interval 1800\nset_tcp_nodelay true",
        help="extra mosquitto.conf lines (the test broker autosaves every second, which"
        " stalls it on every save once thousands of retained states exist)",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for deliveries")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
