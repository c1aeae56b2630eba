"""The alert manager stage alone (issue 4): CPU per alert, without broker or hub.

An AlertManager over a fresh SQLite file opened as the hub opens it, with the routes
of bench/alerts.py (MQTT at once, a digest receiver after 30 s; incidents by district
and asset type), and receivers that accept at once. ``--alerts`` firing rule events
across ``--incidents`` districts go in as the hub hands them over (chunks of
``hub.alerts.manager.HANDLE_CHUNK``, one transaction each); then the outbox is
delivered. Prints, per run and as the median of ``--runs``:

- **handle**: µs of CPU per alert to open it (lifecycle, incident, routing, schedule,
  timeline) and queue its notification (outbox), committed;
- **deliver**: µs of CPU per alert to hand the queued notification to its receiver
  and log it (the MQTT notifier's own cost is not in it: see bench/alerts.py).

bench/alerts.py measures the whole pipeline, whose figures move with everything else
running on the machine; this one isolates the stage that sets how fast a storm of
alerts drains, so a change to it can be measured to a few per cent.

    python3 bench/alert_manager.py                 # 5 runs of 3,000 alerts
    python3 bench/alert_manager.py --profile       # + cProfile of one run, top 25
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.alerts import ROUTES  # noqa: E402
from hub.alerts.manager import HANDLE_CHUNK, AlertManager  # noqa: E402
from hub.alerts.routing import parse_routes  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.messages import Explanation, Notification, RuleEvent, RuleState, Severity  # noqa: E402
from hub.sqlite import connect  # noqa: E402


class _Accepting:
    """A receiver that takes every notification at once."""

    concurrency = 128

    async def send(self, notification: Notification) -> None:
        return None

    async def close(self) -> None:
        return None


def _events(alerts: int, incidents: int) -> list[RuleEvent]:
    now = int(time.time() * 1000)
    return [
        RuleEvent(
            rule_id="storm-pressure-low",
            rule_version="v1",
            state=RuleState.FIRING,
            severity=Severity.CRITICAL,
            district=f"d{i % incidents:03d}",
            asset_type="water_main",
            source=f"wm-{i:05d}",
            ts_ms=now,
            explanation=Explanation(
                summary=f"pressure_bar 1.2 < 2.0 on wm-{i:05d}",
                threshold=2.0,
                observed={"pressure_bar": 1.2},
                readings=((now, 1.2),),
            ),
            labels={},
            description="Water main pressure below the service minimum",
            reading_received_ms=now,
        )
        for i in range(alerts)
    ]


async def one_run(alerts: int, incidents: int, work: Path) -> tuple[float, float]:
    """µs of CPU per alert: (handle, deliver)."""
    routes, problems, _ = parse_routes(ROUTES, "routes.yaml")
    assert routes is not None, problems
    conn = connect(work / "hub.db")
    receivers = {r.name: _Accepting() for r in routes.receivers}
    manager = AlertManager(
        conn,
        routes,
        receivers,
        clock=SystemClock(),
        on_event=lambda _event: None,
        locate=lambda _source: None,
    )
    events = _events(alerts, incidents)
    began = time.process_time()
    for start in range(0, alerts, HANDLE_CHUNK):
        await manager.handle(events[start : start + HANDLE_CHUNK])
    handled = time.process_time()
    delivery = asyncio.create_task(manager.run())
    deadline = time.monotonic() + 120
    # Polled: the manager has no event for "outbox drained" (nor needs one).
    while manager.pending_notifications().get("mqtt", 0):
        if time.monotonic() > deadline:
            raise TimeoutError("the outbox did not drain in 120 s")
        await asyncio.sleep(0.005)
    delivered = time.process_time()
    delivery.cancel()
    await asyncio.gather(delivery, return_exceptions=True)
    conn.close()
    return (handled - began) / alerts * 1e6, (delivered - handled) / alerts * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--incidents", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one run, top 25")
    args = parser.parse_args()
    handle: list[float] = []
    deliver: list[float] = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-alert-manager-") as work:
            h, d = asyncio.run(one_run(args.alerts, args.incidents, Path(work)))
        handle.append(h)
        deliver.append(d)
        print(f"run {run}: handle {h:.0f} µs CPU per alert, deliver {d:.0f} µs", flush=True)
    print(
        f"median of {args.runs} ({args.alerts} alerts, {args.incidents} incidents): handle"
        f" {statistics.median(handle):.0f} µs CPU per alert, deliver"
        f" {statistics.median(deliver):.0f} µs"
    )
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="bench-alert-manager-") as work:
            profiler = cProfile.Profile()
            profiler.runcall(asyncio.run, one_run(args.alerts, args.incidents, Path(work)))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
