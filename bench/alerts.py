"""Alert storm benchmark (issue 4) through the whole pipeline of a real `hub run`.

A real Mosquitto and `hub run` (embedded store, the rules and routes below). A
background load of telemetry (``--background-rate`` readings/s of flood gauges,
evaluated by a rule that never fires, stored) runs through the hub the whole time,
published with bench/loadgen.py. On top, a storm of triggering readings: one per
water-main sensor, whose pressure under 2 bar fires the rule at once; ``--alerts``
sensors in ``--incidents`` districts (alerts group by district and asset type, so
one district is one incident). A subscriber on ``{prefix}/alerts/+/+`` (CONTRACT §1)
times each alert event.

The storm's sensors report normal pressure first (as a real network's do), then a
few seconds of background only; then the storm.

**Latency** is from the triggering reading's PUBLISH leaving the storm publisher
to the alert event arriving at the subscriber: broker -> hub ingest -> journal
(fsync) -> rules -> alert manager (SQLite) -> outbox -> MQTT notifier -> broker
-> subscriber. It also prints the latency as issue 4 defines it: from the
triggering reading's arrival in the hub (``reading_received_ms`` in the event) to
the alert event arriving at the subscriber; that leaves out the broker's queue
and the hub's socket buffer before ingest, so it is never the larger figure.

**What the storm is.** 10,000 alerts in the same millisecond cannot each arrive
within 50 ms: the hub does ~0.3 ms of work per alert. The default storm is a city
event: ``--incidents`` incidents (a pressure loss in a district) start at random
times over ``--storm-seconds`` (15 s); each trips all its sensors within
``--burst`` (1 s), in random order, so the rate is bursty (~670 alerts/s on average,
peaks where incidents overlap). ``--storm-seconds 0`` publishes every trigger at
once and measures throughput (alerts/s, first trigger to last event) instead.

Prints per run and the median of ``--runs`` runs: alerts, incidents, notifications
sent (hub metric), events received, duplicates (must be 0), missing, latency
p50/p95/p99/max, throughput, the background rate achieved and the hub's CPU use.

    python3 bench/alerts.py                         # 3 runs, 10,000 alerts, 5,000 readings/s
    python3 bench/alerts.py --storm-seconds 0       # all at once: throughput
    python3 bench/alerts.py --store influxdb        # telemetry to a real InfluxDB, as in production
    python3 bench/alerts.py --runs 1 --alerts 2000 --incidents 40
    python3 bench/alerts.py --runs 1 --profile /tmp/hub-profile.txt   # pyinstrument of the hub

The machine's cores are shared by Mosquitto, the load generator, the subscriber
and the hub (and InfluxDB with ``--store influxdb``): the figures are for that, not
for a hub with a core of its own. bench/alert_manager.py measures the alert manager
stage alone, to a few per cent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen import _connect, _varint, publish_readings  # noqa: E402
from tests.hubproc import HubProcess, env_for  # noqa: E402
from tests.services import InfluxDB1, Mosquitto, wait_for  # noqa: E402

PREFIX = "bench"
RULES = """
rules:
  - id: storm-pressure-low
    description: Water main pressure below the service minimum (the storm's trigger)
    match: {asset_type: water_main}
    kind: threshold
    metric: pressure_bar
    op: "<"
    value: 2.0
    clear: 2.5
    severity: critical
  - id: background-level
    description: Never fires (loadgen levels stay under 5 m); evaluates every background reading
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 100
    severity: warning
"""
ROUTES = """
receivers:
  - {name: mqtt, mqtt: {}}
  - {name: team, log: {level: info}}
grouping: {by: [district, asset_type], window: 30m}
route:
  repeat_interval: 4h
  routes:
    - {receivers: [mqtt], group_wait: 0s, continue: true}
    - {receivers: [team], group_wait: 30s}
"""
#: Runs the hub under pyinstrument (py-spy is not installed everywhere).
PROFILE_WRAPPER = """
import runpy, sys
from pyinstrument import Profiler
out = sys.argv[1]
sys.argv = ["hub", *sys.argv[5:]]  # drop: out, python, -m, hub
profiler = Profiler(interval=0.001, async_mode="disabled")
profiler.start()
try:
    runpy.run_module("hub", run_name="__main__")
finally:
    profiler.stop()
    with open(out, "w") as f:
        f.write(profiler.output_text(unicode=True, show_all=False))
"""


# --------------------------------------------------------------------------- subscriber


def _subscribe(port: int, out: str, ready: Any, stop: Any) -> None:
    """Subscriber process: writes ``arrival_s<TAB>payload`` per alert event to ``out``."""
    with open(out, "a", buffering=1 << 16) as sink:

        def on_connect(client: paho.Client, *_: object) -> None:
            client.subscribe(f"{PREFIX}/alerts/+/+", qos=1)

        def on_subscribe(*_: object) -> None:
            ready.set()

        def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
            sink.write(f"{time.time():.6f}\t{msg.payload.decode()}\n")

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        while not stop.wait(0.2):
            sink.flush()
        client.loop_stop()
        client.disconnect()


class Subscriber:
    """The measuring subscriber, in its own process so it takes no CPU from the publisher."""

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
            raise RuntimeError("subscriber did not subscribe")

    def count(self) -> int:
        """Events written so far (the file is flushed every 0.2 s)."""
        with self.out.open("rb") as f:
            return sum(1 for _ in f)

    def received(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, event) for every event."""
        rows = []
        for line in self.out.read_text().splitlines():
            arrived, _, payload = line.partition("\t")
            rows.append((float(arrived), json.loads(payload)))
        return rows

    def stop(self) -> None:
        """Flush and stop."""
        self._stop.set()
        self._proc.join(10)


# --------------------------------------------------------------------------- the storm


def schedule(
    alerts: int, incidents: int, seconds: float, burst: float, seed: int
) -> list[tuple[float, str, str]]:
    """(offset s, district, device) per trigger, in time order: incidents start at
    random over ``seconds``; each trips its sensors at random within ``burst``."""
    rng = random.Random(seed)
    onsets = [rng.uniform(0, max(0.0, seconds - burst)) for _ in range(incidents)]
    plan = []
    for i in range(alerts):
        group = i % incidents
        at = onsets[group] + rng.uniform(0, burst) if seconds > 0 else 0.0
        plan.append((at, f"d{group + 1:03d}", f"wm-{i:05d}"))
    plan.sort()
    return plan


def _publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    head = struct.pack("!H", len(topic)) + topic.encode()
    return b"\x32" + _varint(len(head) + 2 + len(payload)) + head + struct.pack("!H", mid) + payload


def publish_storm(
    url: str, plan: list[tuple[float, str, str]], pressure: float = 1.1
) -> dict[str, float]:
    """Publish the triggers on time (QoS 1, raw socket as in loadgen); returns each
    device's publish time (epoch s). Every PUBACK is checked at the end."""
    sock = _connect(url, f"bench-storm-{pressure}")
    sent: dict[str, float] = {}
    acked = 0
    t0 = time.monotonic()
    i = 0
    while i < len(plan):
        wait = t0 + plan[i][0] - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.001))
            continue
        due_until = time.monotonic() - t0
        packets: list[bytes] = []
        now = time.time()
        ts = int(now * 1000)
        # Chunks of 200: the publish time of a trigger is when its chunk leaves.
        while i < len(plan) and plan[i][0] <= due_until and len(packets) < 200:
            _, district, device = plan[i]
            payload = b'{"ts":%d,"metrics":{"pressure_bar":%.1f}}' % (ts, pressure)
            topic = f"{PREFIX}/{district}/water_main/{device}/telemetry"
            packets.append(_publish_packet(topic, payload, i % 65535 + 1))
            sent[device] = now
            i += 1
        sock.sendall(b"".join(packets))
        with contextlib.suppress(BlockingIOError):
            acked += len(sock.recv(1 << 16, socket.MSG_DONTWAIT)) // 4
    sock.settimeout(30)
    while acked < len(plan):
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("broker closed the storm connection")
        acked += len(data) // 4
    sock.sendall(b"\xe0\x00")
    sock.close()
    return sent


# --------------------------------------------------------------------------- one run


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus metric's samples with these labels."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _cpu(hub: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far of the hub's process and of its store writer process."""
    times = hub.cpu_times()
    writer = 0.0
    for child in hub.children():
        with contextlib.suppress(psutil.Error):
            if "hub.store.writer" in " ".join(child.cmdline()):
                t = child.cpu_times()
                writer += t.user + t.system
    return times.user + times.system, writer


def one_run(args: argparse.Namespace, run: int, work: Path) -> dict[str, float]:
    """A fresh broker and hub; background load; the storm; figures."""
    broker = Mosquitto(work / f"mosquitto-{run}", extra_conf=args.broker_conf)
    broker.start()
    (work / "rules").mkdir(exist_ok=True)
    (work / "rules" / "bench.yaml").write_text(RULES)
    (work / "routes.yaml").write_text(ROUTES)
    store: dict[str, str] = {}
    influx: InfluxDB1 | None = None
    if args.store == "influxdb":
        # As in production: the telemetry goes to InfluxDB, in a process of its own.
        influx = InfluxDB1(work / f"influx-{run}")
        influx.start()
        store = {
            "HUB_STORE__BACKEND": "influxdb",
            "HUB_INFLUX__URL": influx.url,
            "HUB_INFLUX__DATABASE": "bench",
        }
    env = env_for(
        PREFIX,
        broker.url,
        HUB_RULES__PATHS=str(work / "rules"),
        HUB_ALERTS__ROUTES_PATH=str(work / "routes.yaml"),
        HUB_LOG__LEVEL="WARNING",
        HUB_STORE__WRITER=args.store_writer,
        **store,
    )
    hub = HubProcess(work / f"hub-{run}", env)
    if args.profile:
        wrapper = work / "profile_hub.py"
        wrapper.write_text(PROFILE_WRAPPER)
        hub.wrap = [sys.executable, str(wrapper), str(args.profile)]
    hub.start()
    assert hub.proc is not None
    proc = psutil.Process(hub.proc.pid)
    sub = Subscriber(broker.port, work / f"received-{run}.tsv")
    plan = schedule(args.alerts, args.incidents, args.storm_seconds, args.burst, args.seed + run)

    background: dict[str, float] = {}
    if args.background_rate > 0:
        # Sized to outlast warm-up, storm and a drain of --drain seconds.
        span = args.alerts / 5000 + args.warmup + args.storm_seconds + args.drain
        total = int(args.background_rate * span)

        def load() -> None:
            background.update(
                publish_readings(
                    broker.url, PREFIX, args.background_devices, 8, total, args.background_rate, 1
                )
            )

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
    # The storm's sensors are known and report normal pressure before it, as a real
    # network's do (no first-reading work for the registry and rules in the storm).
    normal = [(i / 5000, d, dev) for i, (_, d, dev) in enumerate(sorted(plan, key=lambda p: p[2]))]
    publish_storm(broker.url, normal, pressure=4.0)
    time.sleep(args.warmup)  # the hub reaches its steady state under load first
    cpu0, writer0 = _cpu(proc)
    wall0 = time.monotonic()
    sent = publish_storm(broker.url, plan)
    published = time.monotonic()
    try:
        wait_for(
            lambda: sub.count() >= args.alerts,
            timeout=args.timeout,
            interval=0.1,
            what="every alert event",
        )
    except TimeoutError as exc:
        print(f"run {run}: {exc}", flush=True)
    done = time.monotonic()
    cpu1, writer1 = _cpu(proc)
    metrics = httpx.get(f"{hub.url}/metrics", timeout=10).text
    # For a closer look afterwards: the hub's metrics, and when each trigger left.
    (work / f"metrics-{run}.txt").write_text(metrics)
    (work / f"sent-{run}.json").write_text(json.dumps(sent))
    bg_still_running = args.background_rate > 0 and not background
    if args.background_rate > 0:
        loader.join(args.warmup + args.storm_seconds + args.drain + 60)
    accepted = _metric(metrics, "hub_readings_accepted_total")
    sent_mqtt = _metric(metrics, "hub_notifications_total", receiver="mqtt", outcome="sent")
    sub.stop()
    hub.stop()
    broker.stop()
    if influx is not None:
        influx.stop()

    got = sub.received()
    ids = Counter(str(p["notification_id"]) for _, p in got)
    firing = Counter(str(p["alert_id"]) for _, p in got if p.get("event") == "firing")
    latencies = [
        (arrived - sent[str(p["source"])]) * 1000
        for arrived, p in got
        if p.get("event") == "firing" and str(p["source"]) in sent
    ]
    # Where the time goes: trigger publish -> alert opened (broker, ingest, journal,
    # rules, alert manager queue) and alert opened -> event received (commit,
    # outbox, notifier, broker). started_ms is the hub's clock, on the same machine.
    opened = [
        (p["started_ms"] / 1000 - sent[str(p["source"])]) * 1000
        for _, p in got
        if p.get("event") == "firing" and str(p["source"]) in sent
    ]
    delivered = [
        arrived * 1000 - p["started_ms"] for arrived, p in got if p.get("event") == "firing"
    ]
    # Issue 4's definition: from the triggering reading's arrival in the hub.
    from_arrival = [
        arrived * 1000 - p["reading_received_ms"]
        for arrived, p in got
        if p.get("event") == "firing" and p.get("reading_received_ms")
    ]
    last = max((a for a, _ in got), default=time.time())
    first = min(sent.values())
    cpu, writer_cpu = cpu1 - cpu0, writer1 - writer0
    result = {
        "alerts": float(len(plan)),
        "incidents": float(len({d for _, d, _ in plan})),
        "sent": sent_mqtt,
        "received": float(len(got)),
        "duplicates": float(sum(c - 1 for c in ids.values() if c > 1)),
        "missing": float(len(plan) - len(firing)),
        "p50": percentile(latencies, 50) if latencies else float("nan"),
        "p95": percentile(latencies, 95) if latencies else float("nan"),
        "p99": percentile(latencies, 99) if latencies else float("nan"),
        "max": max(latencies, default=float("nan")),
        "arrival_p50": percentile(from_arrival, 50) if from_arrival else float("nan"),
        "arrival_p95": percentile(from_arrival, 95) if from_arrival else float("nan"),
        "arrival_p99": percentile(from_arrival, 99) if from_arrival else float("nan"),
        "open_p50": percentile(opened, 50) if opened else float("nan"),
        "open_p99": percentile(opened, 99) if opened else float("nan"),
        "deliver_p50": percentile(delivered, 50) if delivered else float("nan"),
        "deliver_p99": percentile(delivered, 99) if delivered else float("nan"),
        "throughput": len(firing) / max(last - first, 1e-9),
        "storm_s": published - wall0,
        "hub_cpu": cpu / max(done - wall0, 1e-9) * 100,
        "writer_cpu": writer_cpu / max(done - wall0, 1e-9) * 100,
        "background": background.get("rate", 0.0),
        "accepted": accepted,
    }
    print(
        f"run {run}: {result['alerts']:.0f} alerts / {result['incidents']:.0f} incidents in"
        f" {result['storm_s']:.1f} s; notifications sent {result['sent']:.0f}, events received"
        f" {result['received']:.0f}, duplicates {result['duplicates']:.0f}, missing"
        f" {result['missing']:.0f}; latency ms p50 {result['p50']:.1f} p95 {result['p95']:.1f}"
        f" p99 {result['p99']:.1f} max {result['max']:.1f}; from arrival in the hub p50"
        f" {result['arrival_p50']:.1f} p95 {result['arrival_p95']:.1f} p99"
        f" {result['arrival_p99']:.1f} (to alert opened p50"
        f" {result['open_p50']:.1f} p99 {result['open_p99']:.1f}; opened to received p50"
        f" {result['deliver_p50']:.1f} p99 {result['deliver_p99']:.1f});"
        f" {result['throughput']:.0f} alerts/s"
        f" (first trigger -> last event); hub CPU {result['hub_cpu']:.0f} %"
        f" + store writer process {result['writer_cpu']:.0f} %;"
        f" background {result['background']:.0f} readings/s"
        f"{' (still running at the last event)' if bg_still_running else ''},"
        f" hub accepted {accepted:.0f} readings",
        flush=True,
    )
    return result


def main() -> None:
    """Run the benchmark and print medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument(
        "--storm-seconds", type=float, default=15.0, help="storm length (0: all at once)"
    )
    parser.add_argument("--burst", type=float, default=1.0, help="seconds one incident takes")
    parser.add_argument("--background-rate", type=int, default=5000, help="readings/s")
    parser.add_argument("--background-devices", type=int, default=10_000)
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of background before the storm"
    )
    parser.add_argument("--drain", type=float, default=10.0, help="background after the storm")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for events")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile of the hub")
    parser.add_argument(
        "--store",
        choices=["embedded", "influxdb"],
        default="embedded",
        help="where the hub stores telemetry: its embedded SQLite store (the default"
        " set-up) or a real InfluxDB 1.x (production's)",
    )
    parser.add_argument(
        "--store-writer",
        choices=["auto", "process", "inline"],
        default="auto",
        help="HUB_STORE__WRITER: the store sink in its own process or in the hub's loop",
    )
    parser.add_argument(
        "--broker-conf",
        default="autosave_interval 1800",
        help="extra mosquitto.conf lines (the test broker autosaves every second, which"
        " stalls it on every save once thousands of retained states exist)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    results = [one_run(args, run, work) for run in range(1, args.runs + 1)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    shape = (
        "all at once"
        if args.storm_seconds <= 0
        else f"over {args.storm_seconds:g} s, {args.burst:g} s bursts per incident"
    )
    print(
        f"\nmedian of {len(results)} run(s); storm {shape};"
        f" background {args.background_rate} readings/s requested"
    )
    print(f"alerts:              {med('alerts'):.0f} across {med('incidents'):.0f} incidents")
    print(f"notifications sent:  {med('sent'):.0f} (MQTT, hub metric)")
    print(f"events received:     {med('received'):.0f}")
    print(f"duplicates:          {med('duplicates'):.0f}   missing: {med('missing'):.0f}")
    print(
        f"latency ms (trigger publish -> alert event received): p50 {med('p50'):.1f}"
        f"  p95 {med('p95'):.1f}  p99 {med('p99'):.1f}  max {med('max'):.1f}"
    )
    print(
        f"latency ms (reading's arrival in the hub -> alert event received, issue 4's"
        f" definition): p50 {med('arrival_p50'):.1f}  p95 {med('arrival_p95'):.1f}"
        f"  p99 {med('arrival_p99'):.1f}"
    )
    print(
        f"  of which publish -> alert opened: p50 {med('open_p50'):.1f}  p99"
        f" {med('open_p99'):.1f}; opened -> event received: p50 {med('deliver_p50'):.1f}"
        f"  p99 {med('deliver_p99'):.1f}"
    )
    print(f"throughput:          {med('throughput'):.0f} alerts/s (first trigger -> last event)")
    print(
        f"background achieved: {med('background'):.0f} readings/s; hub CPU during the storm"
        f" {med('hub_cpu'):.0f} % of one core (+ {med('writer_cpu'):.0f} % in the store"
        " writer process)"
    )


if __name__ == "__main__":
    main()
