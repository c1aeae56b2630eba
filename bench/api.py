"""API latency benchmark (issue 5): status endpoints and a one-day telemetry query under ingest.

Each run starts a fresh Mosquitto and a real ``hub run`` (embedded telemetry store,
the default), then sets the scene:

- 10,000 ``flood_gauge`` devices provisioned with ``hub devices import``, in 8
  districts, exactly the devices ``bench/loadgen.py`` publishes for;
- a day of minute readings for a few of them, written to the hub's telemetry
  store before it starts (the one-day telemetry query has a full day to read);
- 200 active alerts: one reading each from 200 devices trips a benchmark rule
  (a third critical, the rest warning); the load never clears them;
- the background load: ``bench/loadgen.py`` publishing pre-encoded QoS 1
  readings for all 10,000 devices, paced at 5,000 readings/s.

After a warm-up, a client in its own process sends requests one after another,
round-robin over the endpoints below, for ``--seconds``, and reports p50/p99 per
endpoint. The ingest rate the hub actually accepted during the measurement and the
hub's CPU use are printed beside the figures, so a run where the load fell short is
visible. Per run and the median of the runs (3 by default).

Rules: the repository's rules except ``flood_gauge.yaml`` (the load generator's
levels ramp 0 -> 5 m, so its rate-of-change rule would open an alert for every
device and there would be 10,000 alerts, not 200), plus the benchmark rules.

    python3 bench/api.py                                   # 10,000 devices, 200 alerts, 3 runs
    python3 bench/api.py --runs 1 --seconds 20 --devices 2000 --rate 1000   # quick look

Target (issue 5): p99 < 50 ms for the status endpoints, < 300 ms for the telemetry query.
The hub is one process; on a 2-core machine it shares the cores with Mosquitto, the
load generator and this client, so the figures here include that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.loadgen import device_topics, publish_readings  # noqa: E402
from hub.messages import Reading  # noqa: E402
from hub.store.embedded import TELEMETRY_DB, EmbeddedStore  # noqa: E402
from tests.hubproc import HubProcess, Publisher, env_for  # noqa: E402
from tests.services import Mosquitto, wait_for  # noqa: E402

PREFIX = "bench"
ASSET_TYPE = "flood_gauge"
BENCH_RULES = """\
# Benchmark alerts: one per device that sends the metric; the load never sends it,
# so they stay active for the whole run.
rules:
  - id: bench-warning
    description: benchmark alert (warning)
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: bench_warning
    op: ">"
    value: 0
    severity: warning
  - id: bench-critical
    description: benchmark alert (critical)
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: bench_critical
    op: ">"
    value: 0
    severity: critical
"""


def _metric(text: str, name: str) -> float:
    """One sample's value from Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _devices(devices: int, districts: int) -> list[tuple[str, str]]:
    """(device_id, district) of every device the load generator publishes for."""
    out = []
    for topic in device_topics(PREFIX, devices, districts):
        _, district, _, device_id, _ = topic.split("/")
        out.append((device_id, district))
    return out


def _rules_dir(workdir: Path) -> Path:
    rules = workdir / "rules"
    rules.mkdir()
    for path in (REPO / "rules").glob("*.yaml"):
        if path.name not in ("flood_gauge.yaml", "routes.yaml"):
            shutil.copy(path, rules / path.name)
    (rules / "bench.yaml").write_text(BENCH_RULES)
    return rules


async def _write_history(data_dir: Path, devices: list[tuple[str, str]], now_ms: int) -> None:
    """A day of minute readings per device, straight into the hub's (not yet running) store."""
    store = EmbeddedStore(data_dir / TELEMETRY_DB)
    await store.open()
    try:
        for device_id, district in devices:
            await store.write(
                [
                    Reading(
                        district,
                        ASSET_TYPE,
                        device_id,
                        now_ms - i * 60_000,
                        {"water_level_m": 1 + (i % 90) / 100, "battery_v": 3.6},
                    )
                    for i in range(1, 24 * 60 + 1)
                ]
            )
    finally:
        await store.close()


def client(base: str, key: str, targets: list[tuple[str, str]], seconds: float, out: Any) -> None:
    """Runs in its own process: requests one at a time, round-robin, for ``seconds``."""
    times: dict[str, list[float]] = {label: [] for label, _ in targets}
    errors: dict[str, int] = dict.fromkeys(times, 0)
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        for _, path in targets:  # warm-up: connection, first-call caches
            http.get(path).raise_for_status()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for label, path in targets:
                started = time.perf_counter()
                response = http.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code == 200:
                    times[label].append(elapsed)
                else:
                    errors[label] += 1
    out.put((times, errors))


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_run(args: argparse.Namespace, run: int, workdir: Path) -> dict[str, Any]:
    """Set up broker, hub, devices, history and alerts; measure under load; tear down."""
    broker = Mosquitto(workdir / f"mosquitto-{run}")
    broker.start()
    data_dir = workdir / f"hub-{run}"
    data_dir.mkdir()
    hub = HubProcess(
        data_dir,
        env_for(
            PREFIX,
            broker.url,
            HUB_RULES__PATHS=str(_rules_dir(data_dir)),
            HUB_LOG__LEVEL="WARNING",
            HUB_API__METRICS_PUBLIC="true",
        ),
    )
    devices = _devices(args.devices, args.districts)
    try:
        started = time.monotonic()
        csv = data_dir / "devices.csv"
        csv.write_text(
            "id,asset_type,district\n" + "".join(f"{d},{ASSET_TYPE},{n}\n" for d, n in devices)
        )
        hub.cli("devices", "import", str(csv))
        history = devices[: args.history_devices]
        asyncio.run(_write_history(data_dir, history, int(time.time() * 1000)))
        hub.start(timeout=120)
        key = hub.admin_key
        publisher = Publisher(broker.url)
        now = int(time.time() * 1000)
        for i, (device_id, district) in enumerate(devices[: args.alerts]):
            metric = "bench_critical" if i % 3 == 0 else "bench_warning"
            publisher.publish(
                f"{PREFIX}/{district}/{ASSET_TYPE}/{device_id}/telemetry",
                {"ts": now, "metrics": {metric: 1}},
            )
        publisher.wait_all()
        publisher.close()

        def alerts_open() -> bool:
            body = hub.get("/api/v1/alerts", state="active", limit=1000)
            return bool(len(body) >= args.alerts)

        wait_for(alerts_open, timeout=120, interval=0.5, what=f"{args.alerts} active alerts")
        print(
            f"run {run}: hub up with {args.devices} devices, {args.alerts} active alerts, "
            f"{len(history)} devices with a day of minute readings "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )

        total = int(args.rate * (args.warmup + args.seconds + 15))
        load: dict[str, Any] = {}

        def publish() -> None:
            try:
                load.update(
                    publish_readings(
                        broker.url,
                        PREFIX,
                        args.devices,
                        args.districts,
                        total,
                        rate=args.rate,
                        processes=args.processes,
                    )
                )
            except Exception as exc:  # reported below; the measurement must not hang
                load["error"] = repr(exc)

        loader = threading.Thread(target=publish, daemon=True)
        loader.start()
        time.sleep(args.warmup)  # the load reaches its pace; the hub's batches settle
        assert hub.proc is not None
        proc = psutil.Process(hub.proc.pid)
        metrics0 = httpx.get(f"{hub.url}/metrics", timeout=10).text
        cpu0 = proc.cpu_times()
        t0 = time.monotonic()

        history_device = history[0][0]
        targets = [
            ("GET /devices (100)", "/api/v1/devices"),
            ("GET /devices (1000)", "/api/v1/devices?limit=1000"),
            ("GET /districts/d03/status", "/api/v1/districts/d03/status"),
            ("GET /districts (board)", "/api/v1/districts"),
            ("GET /alerts (active, 200)", f"/api/v1/alerts?state=active&limit={args.alerts}"),
            (
                "telemetry 1 day, 5m means",
                f"/api/v1/devices/{history_device}/telemetry?start=-1d&every=5m&agg=mean",
            ),
            (
                "telemetry 1 day, raw 1 metric",
                f"/api/v1/devices/{history_device}/telemetry?start=-1d&metric=water_level_m",
            ),
        ]
        spawn = multiprocessing.get_context("spawn")
        queue = spawn.Queue()
        measurer = spawn.Process(target=client, args=(hub.url, key, targets, args.seconds, queue))
        measurer.start()
        times, errors = queue.get(timeout=args.seconds + 120)
        measurer.join()
        elapsed = time.monotonic() - t0
        cpu1 = proc.cpu_times()
        metrics1 = httpx.get(f"{hub.url}/metrics", timeout=10).text
        accepted = _metric(metrics1, "hub_readings_accepted_total") - _metric(
            metrics0, "hub_readings_accepted_total"
        )
        evaluated = _metric(metrics1, "hub_readings_evaluated_total") - _metric(
            metrics0, "hub_readings_evaluated_total"
        )
        still_open = len(hub.get("/api/v1/alerts", state="active", limit=1000))
        loader.join(timeout=total / args.rate + 120)
        result = {
            "times": times,
            "errors": errors,
            "accepted_rate": accepted / elapsed,
            "evaluated_rate": evaluated / elapsed,
            "hub_cpu": ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed,
            "active_alerts": still_open,
            "load": load,
        }
        print(
            f"run {run}: during the measurement the hub accepted {result['accepted_rate']:,.0f} "
            f"readings/s and evaluated {result['evaluated_rate']:,.0f}/s; hub CPU "
            f"{result['hub_cpu'] * 100:.0f}% of one core; {still_open} active alerts"
            + (f"; load generator failed: {load['error']}" if "error" in load else ""),
            flush=True,
        )
        for label, values in times.items():
            print(
                f"  {label:<32} n {len(values):5d}  p50 {pct(values, 0.5):7.1f} ms"
                f"   p99 {pct(values, 0.99):7.1f} ms"
                + (f"   ({errors[label]} non-200)" if errors[label] else ""),
                flush=True,
            )
        return result
    finally:
        with contextlib.suppress(Exception):
            hub.stop()
        broker.stop()


def main() -> None:
    """Parse arguments, run, print per-run figures and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--districts", type=int, default=8)
    parser.add_argument("--history-devices", type=int, default=5)
    parser.add_argument("--rate", type=float, default=5000.0, help="readings/s of the load")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load first")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.alerts > 1000 or args.alerts > args.devices:
        parser.error("--alerts: at most 1000 and at most --devices")

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-api-") as tmp:
        for run in range(1, args.runs + 1):
            runs.append(one_run(args, run, Path(tmp)))
    print(
        f"median of {args.runs} run(s), {args.devices} devices, {args.alerts} active alerts, "
        f"load {args.rate:,.0f} readings/s "
        f"(accepted {statistics.median(r['accepted_rate'] for r in runs):,.0f}/s, "
        f"hub CPU {statistics.median(r['hub_cpu'] for r in runs) * 100:.0f}%):"
    )
    for label in runs[0]["times"]:
        p50 = statistics.median(pct(r["times"][label], 0.5) for r in runs)
        p99 = statistics.median(pct(r["times"][label], 0.99) for r in runs)
        print(f"  {label:<32} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")


if __name__ == "__main__":
    main()
