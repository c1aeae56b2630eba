"""Open-data benchmark (issue 15): public queries while ingest runs, and what they cost ingest.

One run starts a fresh Mosquitto and a real ``hub run`` (embedded store), then sets the scene:

- ``--devices`` flood gauges (10,000 by default, the devices ``bench/loadgen.py``
  publishes for), provisioned with places, each with a day of minute readings (the
  last UTC day that ended over two hours ago, so its delays have passed) written to
  the store before the hub starts; and ``--traffic``
  traffic counters (aggregate-only, k 5) with the same day, so aggregates exist;
- the hub's publisher releases that day's daily datasets and the counters' hourly
  cells at start (the run waits for the release log to show them);
- the background load: ``bench/loadgen.py`` publishing QoS 1 readings for every
  flood gauge at ``--rate`` (5,000/s).

Then it measures the ingest rate the hub accepts for ``--seconds`` with no public
queries (the baseline), and again while ``--clients`` client processes (no key) send
requests one after another, round-robin over:

- ``Observations?$filter=…&$top=100`` on one flood gauge's datastream (a six-hour
  window of that day and a result bound, newest first);
- the daily CSV download of the flood gauges (``flood_gauge-daily.csv``);
- for context: a page of Things, the catalog, an aggregate datastream's cells.

Prints p50/p99 per request and the two ingest rates.

    python3 bench/open_data.py                      # 10,000 devices, a day, 5,000 readings/s
    python3 bench/open_data.py --devices 1000 --traffic 50 --rate 1000 --seconds 10  # quick look

Targets (issue 15): p99 < 100 ms for the Observations query, < 1 s for the daily CSV;
the ingest rate unchanged. On a 2-core machine the hub shares the cores with Mosquitto,
the load generator and the clients, so the figures include that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench.api import _metric, pct  # noqa: E402
from bench.loadgen import device_topics, publish_readings  # noqa: E402
from hub.messages import Reading  # noqa: E402
from hub.store.embedded import TELEMETRY_DB, EmbeddedStore  # noqa: E402
from tests.hubproc import HubProcess, env_for  # noqa: E402
from tests.services import Mosquitto, wait_for  # noqa: E402

PREFIX = "bench"
DAY = 86_400_000
HOUR = 3_600_000
#: Readings written per store transaction while preparing the history.
WRITE_BATCH = 20_000


def fleet(devices: int, districts: int, traffic: int) -> list[tuple[str, str, str, float, float]]:
    """(device_id, district, asset_type, lat, lon): the load generator's flood gauges, then
    traffic counters spread over the same districts."""
    out = []
    for i, topic in enumerate(device_topics(PREFIX, devices, districts)):
        _, district, asset_type, device_id, _ = topic.split("/")
        out.append((device_id, district, asset_type, 51.4 + i % 97 / 500, 7.4 + i % 89 / 500))
    for i in range(traffic):
        district = f"d{(i % districts) + 1:02d}"
        out.append((f"tc-{i:05d}", district, "traffic_counter", 51.45 + i % 31 / 300, 7.45))
    return out


async def write_history(
    data_dir: Path, devices: list[tuple[str, str, str, float, float]], day: int, every_ms: int
) -> int:
    """Readings of every device over ``[day, day + 1 d)``, into the (not yet running) store."""
    store = EmbeddedStore(data_dir / TELEMETRY_DB)
    await store.open()
    written = 0
    try:
        batch: list[Reading] = []
        for n, (device_id, district, asset_type, _, _) in enumerate(devices):
            for ts in range(day, day + DAY, every_ms):
                step = (ts // every_ms + n) % 90
                metrics: dict[str, float | bool]
                if asset_type == "traffic_counter":
                    metrics = {"vehicles_per_min": float(step % 40), "avg_speed_kmh": 40.0}
                else:
                    metrics = {"water_level_m": 1 + step / 100, "battery_v": 3.6}
                batch.append(Reading(district, asset_type, device_id, ts, metrics))
                if len(batch) >= WRITE_BATCH:
                    written += (await store.write(batch)).written
                    batch = []
        written += (await store.write(batch)).written
    finally:
        await store.close()
    return written


def client(base: str, targets: list[tuple[str, str]], seconds: float, out: Any) -> None:
    """Runs in its own process: requests one at a time, round-robin, for ``seconds``."""
    times: dict[str, list[float]] = {label: [] for label, _ in targets}
    errors: dict[str, int] = dict.fromkeys(times, 0)
    with httpx.Client(base_url=base, timeout=60) as http:
        for _, path in targets:  # warm-up: connection, first renders
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


def accepted(hub: HubProcess) -> float:
    """hub_readings_accepted_total now."""
    return _metric(httpx.get(f"{hub.url}/metrics", timeout=10).text, "hub_readings_accepted_total")


def main() -> None:
    """Parse arguments, set the scene, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000, help="flood gauges")
    parser.add_argument("--traffic", type=int, default=400, help="traffic counters")
    parser.add_argument("--districts", type=int, default=8)
    parser.add_argument("--history-every", type=float, default=60.0, help="s between readings")
    parser.add_argument("--rate", type=float, default=5000.0, help="readings/s of the load")
    parser.add_argument("--clients", type=int, default=1, help="concurrent public clients")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load first")
    parser.add_argument("--seconds", type=float, default=60.0, help="each measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hub-bench-open-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(workdir / "mosquitto")
        broker.start()
        data_dir = workdir / "hub"
        data_dir.mkdir()
        (data_dir / "rules").mkdir()
        hub = HubProcess(
            data_dir,
            env_for(
                PREFIX,
                broker.url,
                HUB_RULES__PATHS=str(data_dir / "rules"),
                HUB_LOG__LEVEL="WARNING",
                HUB_API__METRICS_PUBLIC="true",
                HUB_OPEN_DATA__SETTLE_S="0",
                HUB_OPEN_DATA__BACKFILL_DAYS="3",
                HUB_OPEN_DATA__RATE_PER_S="10000",
                HUB_OPEN_DATA__BURST="100000",
            ),
        )
        try:
            started = time.monotonic()
            devices = fleet(args.devices, args.districts, args.traffic)
            csv = data_dir / "devices.csv"
            csv.write_text(
                "id,asset_type,district,latitude,longitude\n"
                + "".join(f"{d},{a},{n},{la:.6f},{lo:.6f}\n" for d, n, a, la, lo in devices)
            )
            hub.cli("devices", "import", str(csv))
            # The last whole UTC day whose daily release is due (its delays, 1 h, have passed).
            day = (int(time.time() * 1000) - 2 * HOUR) // DAY * DAY - DAY
            written = asyncio.run(
                write_history(data_dir, devices, day, int(args.history_every * 1000))
            )
            print(f"history: {written:,} readings of one day written", flush=True)
            hub.start(timeout=300)

            def released() -> bool:
                log = hub.get("/api/v1/open-data/releases", kind="daily", limit=1000)
                return {r["dataset"] for r in log} >= {"flood_gauge-daily", "traffic_counter-daily"}

            wait_for(released, timeout=1800, interval=2, what="the day's daily releases")
            print(
                f"hub up, the day published ({time.monotonic() - started:.0f} s); "
                f"load {args.rate:,.0f} readings/s",
                flush=True,
            )
            total = int(args.rate * (args.warmup + 2 * args.seconds + 30))
            load: dict[str, Any] = {}

            def publish() -> None:
                try:
                    load.update(
                        publish_readings(
                            broker.url, PREFIX, args.devices, args.districts, total, rate=args.rate
                        )
                    )
                except Exception as exc:  # reported below; the measurement must not hang
                    load["error"] = repr(exc)

            loader = threading.Thread(target=publish, daemon=True)
            loader.start()
            time.sleep(args.warmup)
            a0, t0 = accepted(hub), time.monotonic()
            time.sleep(args.seconds)
            baseline = (accepted(hub) - a0) / (time.monotonic() - t0)

            gauge = devices[0][0]
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((day + 6 * HOUR) / 1000))
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((day + 12 * HOUR) / 1000))
            stream = f"{gauge}:water_level_m"
            targets = [
                (
                    "Observations $filter $top=100",
                    f"/sta/v1.1/Datastreams('{stream}')/Observations?$filter=phenomenonTime ge "
                    f"{since} and phenomenonTime lt {until} and result gt 1.2"
                    "&$orderby=phenomenonTime desc&$top=100",
                ),
                ("daily CSV (flood gauges)", "/open/v1/datasets/flood_gauge-daily.csv"),
                ("Things ($top=100)", "/sta/v1.1/Things?$top=100&$skip=5000"),
                ("catalog.json", "/open/v1/catalog.json"),
                (
                    "aggregate cells ($top=24)",
                    "/sta/v1.1/Datastreams('d01:traffic_counter:vehicles_per_min')/Observations"
                    "?$top=24",
                ),
            ]
            spawn = multiprocessing.get_context("spawn")
            queue = spawn.Queue()
            clients = [
                spawn.Process(target=client, args=(hub.url, targets, args.seconds, queue))
                for _ in range(args.clients)
            ]
            a1, t1 = accepted(hub), time.monotonic()
            for c in clients:
                c.start()
            results = [queue.get(timeout=args.seconds + 300) for _ in clients]
            during = (accepted(hub) - a1) / (time.monotonic() - t1)
            for c in clients:
                c.join()
            loader.join(timeout=total / args.rate + 120)
            print(
                f"ingest accepted {baseline:,.0f} readings/s without public queries, "
                f"{during:,.0f}/s with {args.clients} public client(s) "
                f"({(during / baseline - 1) * 100:+.1f}%)"
                + (f"; load generator failed: {load['error']}" if "error" in load else ""),
                flush=True,
            )
            for label, _ in targets:
                values = [v for times, _ in results for v in times[label]]
                failed = sum(errors[label] for _, errors in results)
                print(
                    f"  {label:<32} n {len(values):5d}  p50 {pct(values, 0.5):7.1f} ms"
                    f"   p99 {pct(values, 0.99):7.1f} ms"
                    + (f"   ({failed} non-200)" if failed else ""),
                    flush=True,
                )
        finally:
            with contextlib.suppress(Exception):
                hub.stop()
            broker.stop()


if __name__ == "__main__":
    main()
