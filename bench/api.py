"""API latency benchmark (issue 5): the status endpoints and a one-day telemetry query.

Builds the real stages in one process (registry with N devices, alert manager with
A active alerts, rule service over the repo's rules, embedded telemetry store with a
day of minute readings for a few devices), serves ``create_app`` with uvicorn on a
free port, and measures from a separate client process:

- ``GET /api/v1/devices`` (first page of 100, and a page of 1000)
- ``GET /api/v1/districts/{d}/status``
- ``GET /api/v1/alerts`` (state=active, 200 per page)
- ``GET /api/v1/devices/{id}/telemetry`` over one day, 5-minute means, and raw

Prints p50/p99 per endpoint for each run and the median of the runs.

    python3 bench/api.py                                   # 10,000 devices, 200 alerts, 3 runs
    python3 bench/api.py --devices 2000 --requests 50 --runs 1

Target (issue 5): p99 < 50 ms for the status endpoints, < 300 ms for the telemetry query.
Ingest load (5,000 readings/s) is not generated here; run ``bench/ingest.py`` beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn

from devices.catalog import load_catalog
from hub.api.app import create_app
from hub.api.context import ApiContext
from hub.api.keys import create_key
from hub.clock import SystemClock
from hub.events import EventBus
from hub.ingest.dead_letters import DeadLetterStore
from hub.messages import Explanation, Reading, RuleEvent, RuleState, Severity
from hub.ports import HealthReport
from hub.registry.registry import Registry
from hub.responders import build_alert_manager
from hub.rules.service import RuleService
from hub.settings import AlertsSettings, ApiSettings, RulesSettings, Settings
from hub.sqlite import STATE_DB, connect
from hub.store.embedded import EmbeddedStore

REPO = Path(__file__).resolve().parents[1]
ASSET_TYPES = {
    "flood_gauge": {"water_level_m": 1.2, "rainfall_mm_h": 0.0, "battery_v": 3.6},
    "water_main": {"pressure_bar": 4.1, "flow_l_s": 120.0, "battery_v": 3.6},
    "bridge": {"strain_ue": 150.0, "vibration_mm_s": 2.0, "temperature_c": 12.0},
    "manhole": {"methane_pct_lel": 1.0, "h2s_ppm": 0.5, "water_level_m": 0.1, "battery_v": 3.6},
    "air_quality": {"pm2_5_ug_m3": 12.0, "pm10_ug_m3": 20.0, "no2_ug_m3": 30.0},
    "streetlight": {"power_w": 80.0, "voltage_v": 230.0, "lamp_on": True},
    "traffic_counter": {"vehicles_per_min": 30.0, "avg_speed_kmh": 42.0},
}


class _Health:
    async def health(self) -> HealthReport:
        return HealthReport(ok=True, ready=True, checks={})


def _device(i: int, districts: int) -> tuple[str, str, str]:
    asset_type = list(ASSET_TYPES)[i % len(ASSET_TYPES)]
    district = f"d{(i // len(ASSET_TYPES)) % districts + 1:02d}"
    return f"{asset_type[:2]}-{district}-{i:05d}", district, asset_type


async def build(args: argparse.Namespace, data_dir: Path) -> tuple[ApiContext, str, str]:
    """Real stages filled with the benchmark's devices, readings and alerts."""
    clock = SystemClock()
    now = clock.now_ms()
    settings = Settings(
        data_dir=data_dir,
        rules=RulesSettings(
            paths=[str(REPO / "rules")], managed_dir=str(data_dir / "managed"), watch=False
        ),
        alerts=AlertsSettings(routes_path=str(REPO / "rules" / "routes.yaml")),
        api=ApiSettings(port=0),
    )
    catalog = load_catalog()
    events = EventBus()
    registry = Registry(
        connect(data_dir / STATE_DB),
        clock=clock,
        expected_interval_s=catalog.expected_interval_s,
        on_status_change=events.publish,
    )
    devices = [_device(i, args.districts) for i in range(args.devices)]
    registry.apply_readings(
        [
            Reading(d, a, dev, now - 30_000, ASSET_TYPES[a], seq=0, received_ms=now - 30_000)
            for dev, d, a in devices
        ]
    )
    registry.flush()

    store = EmbeddedStore(data_dir / "telemetry.db")
    await store.open()
    history = [d for d in devices if d[2] == "flood_gauge"][: args.history_devices]
    for dev, d, a in history:
        day = [
            Reading(
                d, a, dev, now - i * 60_000, {"water_level_m": 1 + (i % 90) / 100, "battery_v": 3.6}
            )
            for i in range(24 * 60)
        ]
        await store.write(day)

    alerts = build_alert_manager(
        settings,
        connect(data_dir / STATE_DB),
        clock=clock,
        on_event=events.publish,
        locate=registry.location,
        mqtt_url="mqtt://127.0.0.1:1",  # notifiers are built but never run here
    )
    fired = [
        RuleEvent(
            rule_id="bench-rule",
            rule_version="v1",
            state=RuleState.FIRING,
            severity=Severity.WARNING if i % 3 else Severity.CRITICAL,
            district=d,
            asset_type=a,
            source=dev,
            ts_ms=now - 1000,
            explanation=Explanation(summary="benchmark", threshold=1.0),
        )
        for i, (dev, d, a) in enumerate(devices[: args.alerts])
    ]
    await alerts.handle(fired)

    rules = RuleService(
        settings.rules,
        data_dir,
        clock=clock,
        expected_interval_s=catalog.expected_interval_s,
    )
    conn = connect(data_dir / STATE_DB)
    ctx = ApiContext(
        settings=settings,
        clock=clock,
        conn=conn,
        registry=registry,
        store=store,
        alerts=alerts,
        rules=rules,
        dead_letters=DeadLetterStore(connect(data_dir / STATE_DB), 1000),
        health=_Health(),
        events=events,
        catalog_classification=catalog.classification,
    )
    key = create_key(conn, role="admin", name="bench")
    return ctx, key, history[0][0]


def client(base: str, key: str, targets: list[tuple[str, str]], n: int, out: Any) -> None:
    """Runs in its own process: time ``n`` sequential requests per target."""
    results: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        for label, path in targets:
            for _ in range(3):  # warm-up
                http.get(path).raise_for_status()
            times = []
            for _ in range(n):
                started = time.perf_counter()
                response = http.get(path)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            results[label] = times
    out.put(results)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--districts", type=int, default=8)
    parser.add_argument("--history-devices", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="per endpoint per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hub-bench-api-") as tmp:
        started = time.perf_counter()
        ctx, key, history_device = await build(args, Path(tmp))
        print(
            f"built {args.devices} devices, {args.alerts} alerts, {args.history_devices} devices "
            f"with a day of minute readings in {time.perf_counter() - started:.1f}s"
        )
        config = uvicorn.Config(
            create_app(ctx),
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        base = f"http://{host}:{port}"
        targets = [
            ("GET /devices (100)", "/api/v1/devices"),
            ("GET /devices (1000)", "/api/v1/devices?limit=1000"),
            ("GET /districts/d03/status", "/api/v1/districts/d03/status"),
            ("GET /alerts (active, 200)", "/api/v1/alerts?state=active&limit=200"),
            (
                "telemetry 1 day, 5m means",
                f"/api/v1/devices/{history_device}/telemetry?start=-1d&every=5m&agg=mean",
            ),
            (
                "telemetry 1 day, raw 1 metric",
                f"/api/v1/devices/{history_device}/telemetry?start=-1d&metric=water_level_m",
            ),
        ]
        runs: list[dict[str, list[float]]] = []
        ctx_mp = multiprocessing.get_context("spawn")
        for run in range(args.runs):
            queue = ctx_mp.Queue()
            proc = ctx_mp.Process(target=client, args=(base, key, targets, args.requests, queue))
            proc.start()
            while queue.empty():  # noqa: ASYNC110 - a multiprocessing queue has no awaitable
                await asyncio.sleep(0.05)  # keep serving while the client measures
            result = queue.get()
            proc.join()
            runs.append(result)
            print(f"run {run + 1}:")
            for label, times in result.items():
                print(
                    f"  {label:<32} p50 {pct(times, 0.5):7.1f} ms   p99 {pct(times, 0.99):7.1f} ms"
                )
        print(f"median of {args.runs} run(s):")
        for label, _ in targets:
            p50 = statistics.median(pct(r[label], 0.5) for r in runs)
            p99 = statistics.median(pct(r[label], 0.99) for r in runs)
            print(f"  {label:<32} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
        server.should_exit = True
        await serving
        await ctx.store.close()


if __name__ == "__main__":
    asyncio.run(main())
