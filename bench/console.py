"""Console benchmark (issue 14): a usable board, a drawn map, and memory under live updates.

Sets the scene on a fresh Mosquitto and a real ``hub run`` (embedded store):

- ``--devices`` devices (10,000) of every asset type, provisioned with their places
  (the demo fleet's layout, ``devices.simulator.build_fleet``) and the demo's
  district outlines (``HUB_CONSOLE__DISTRICTS_GEOJSON``);
- ``--alerts`` active alerts (200): one reading each from that many devices trips a
  benchmark rule (a third critical, the rest warning) that nothing clears;
- live updates for the whole measurement: every device reports once a minute
  (167 readings/s for 10,000) and every few seconds a handful of other devices
  fire and clear a benchmark alert, so the live stream carries alert events and
  the console redraws.

Then Debian's Chromium (Playwright, ``/usr/bin/chromium``, no browser download)
opens the console with an operator key:

- **board**: from navigation start to the first board drawn with data (the console's
  ``performance.mark("console:board")``), over ``--loads`` fresh page loads;
- **map**: from navigation start to every device added to the clustered map
  (``performance.mark("console:map")``), likewise;
- **memory**: the page (``--page``, the board by default) stays open for
  ``--minutes`` (10) of live updates; the JS heap after a forced garbage collection
  is sampled every ``--sample-s`` seconds and printed, with the growth from the
  first sample to the last.

    python3 bench/console.py                      # 10,000 devices, 200 alerts, 10 minutes
    python3 bench/console.py --minutes 1 --devices 2000 --alerts 50   # quick look

Targets (issue 14): board < 1 s, map with all devices < 2 s, no growth in memory over
the 10 minutes. Everything (broker, hub, publisher, browser) shares the machine, so
the figures include that contention.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devices.signals import SignalModel, rounded  # noqa: E402
from devices.simulator import build_fleet  # noqa: E402
from tests.hubproc import HubProcess, Publisher, env_for  # noqa: E402
from tests.services import Mosquitto, wait_for  # noqa: E402

PREFIX = "bench"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-precise-memory-info",
]
OUTLINES = REPO / "devices" / "scenarios" / "demo-districts.geojson"
BENCH_RULES = """\
# Benchmark alerts: open while a device sends the metric above 0; the background
# readings never carry it, so the alerts stay active for the whole run.
rules:
  - id: bench-warning
    description: benchmark alert (warning)
    kind: threshold
    metric: bench_warning
    op: ">"
    value: 0
    severity: warning
  - id: bench-critical
    description: benchmark alert (critical)
    kind: threshold
    metric: bench_critical
    op: ">"
    value: 0
    severity: critical
  - id: bench-flicker
    description: benchmark alert that fires and clears (live updates)
    kind: threshold
    metric: bench_flicker
    op: ">"
    value: 0
    severity: info
"""


class LiveCity:
    """Readings of every device once a minute, and a few alerts firing and clearing."""

    def __init__(self, url: str, fleet: list[Any], flicker: list[Any]) -> None:
        self.publisher = Publisher(url)
        self.fleet = fleet
        self.flicker = flicker
        self.models = {s.device_id: SignalModel(s, seed=1) for s in fleet}
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def topic(spec: Any) -> str:
        return f"{PREFIX}/{spec.district}/{spec.asset_type}/{spec.device_id}/telemetry"

    def _run(self) -> None:
        per_second = max(1, len(self.fleet) // 60)
        n = 0
        tick = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = int(time.time() * 1000)
            for _ in range(per_second):
                spec = self.fleet[n % len(self.fleet)]
                n += 1
                metrics = rounded(self.models[spec.device_id].sample(now))
                self.publisher.publish(self.topic(spec), {"ts": now, "metrics": metrics})
            if tick % 5 == 0:  # every 5 s: a few alerts change state
                value = 1 if (tick // 5) % 2 == 0 else 0
                for spec in self.flicker:
                    self.publisher.publish(
                        self.topic(spec), {"ts": now, "metrics": {"bench_flicker": value}}
                    )
            self.sent += per_second
            tick += 1
            next_at += 1.0
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.publisher.close()


def set_scene(args: argparse.Namespace, workdir: Path) -> tuple[Mosquitto, HubProcess, LiveCity]:
    """Broker, hub with the fleet, the active alerts, and the live updates running."""
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    data_dir = workdir / "hub"
    data_dir.mkdir()
    rules = data_dir / "rules"
    rules.mkdir()
    (rules / "bench.yaml").write_text(BENCH_RULES)
    hub = HubProcess(
        data_dir,
        env_for(
            PREFIX,
            broker.url,
            HUB_RULES__PATHS=str(rules),
            HUB_LOG__LEVEL="WARNING",
            HUB_CONSOLE__DISTRICTS_GEOJSON=str(OUTLINES),
        ),
    )
    fleet = build_fleet(args.devices, 8)
    with (data_dir / "fleet.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "asset_type", "district", "latitude", "longitude"])
        for s in fleet:
            writer.writerow([s.device_id, s.asset_type, s.district, s.latitude, s.longitude])
    started = time.monotonic()
    hub.cli("devices", "import", str(data_dir / "fleet.csv"))
    hub.start(timeout=120)
    publisher = Publisher(broker.url)
    now = int(time.time() * 1000)
    for i, spec in enumerate(fleet[: args.alerts]):
        metric = "bench_critical" if i % 3 == 0 else "bench_warning"
        publisher.publish(LiveCity.topic(spec), {"ts": now, "metrics": {metric: 1}})
    publisher.wait_all()
    publisher.close()
    wait_for(
        lambda: len(hub.get("/api/v1/alerts", state="active", limit=1000)) >= args.alerts,
        timeout=120,
        interval=0.5,
        what=f"{args.alerts} active alerts",
    )
    live = LiveCity(broker.url, fleet, fleet[args.alerts : args.alerts + 5])
    live.start()
    print(
        f"scene: {args.devices} devices, {args.alerts} active alerts, live updates running "
        f"({time.monotonic() - started:.0f} s to set up)",
        flush=True,
    )
    return broker, hub, live


def load_times(browser: Any, url: str, key: str, route: str, mark: str, loads: int) -> list[float]:
    """Milliseconds from navigation start to ``mark``, over ``loads`` fresh page loads.

    The contexts bypass the page's CSP only because Playwright's in-page wait needs
    eval; the timings come from the page's own performance marks.
    """
    times = []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, bypass_csp=True)
        context.add_init_script(f"sessionStorage.setItem('hub.apiKey', {key!r});")
        page = context.new_page()
        page.goto(f"{url}/#/{route}")
        page.wait_for_function(
            f"performance.getEntriesByName({mark!r}).length > 0", timeout=120_000
        )
        times.append(page.evaluate(f"performance.getEntriesByName({mark!r})[0].startTime"))
        context.close()
    return times


def memory_over_time(
    browser: Any, url: str, key: str, route: str, minutes: float, sample_s: float
) -> list[tuple[float, float]]:
    """(minutes, MiB of JS heap after a GC) while ``route`` stays open under live updates."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, bypass_csp=True)
    context.add_init_script(f"sessionStorage.setItem('hub.apiKey', {key!r});")
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    page.goto(f"{url}/#/{route}")
    page.wait_for_selector("#connection[data-state='live']", timeout=60_000)
    samples = []
    start = time.monotonic()
    while True:
        cdp.send("HeapProfiler.collectGarbage")
        used = page.evaluate("performance.memory.usedJSHeapSize") / 2**20
        elapsed = (time.monotonic() - start) / 60
        samples.append((elapsed, used))
        print(f"  {elapsed:5.1f} min  {used:7.2f} MiB", flush=True)
        if elapsed >= minutes:
            break
        time.sleep(min(sample_s, max(0.0, minutes * 60 - (time.monotonic() - start)) + 0.01))
    context.close()
    return samples


def main() -> None:
    """Set the scene, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0, help="live updates for memory")
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--loads", type=int, default=5, help="page loads timed per page")
    parser.add_argument("--page", default="board", help="route kept open for the memory figure")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        broker, hub, live = set_scene(args, Path(tmp))
        try:
            out = hub.cli("keys", "create", "--role", "operator", "--name", "bench").stdout
            key = out.split()[-1]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                board = load_times(browser, hub.url, key, "board", "console:board", args.loads)
                drawn = load_times(browser, hub.url, key, "map", "console:map", args.loads)
                print(
                    f"board usable: median {statistics.median(board):.0f} ms "
                    f"(max {max(board):.0f}) over {len(board)} loads   target < 1000 ms"
                )
                print(
                    f"map drawn with {args.devices} devices: median {statistics.median(drawn):.0f} "
                    f"ms (max {max(drawn):.0f}) over {len(drawn)} loads   target < 2000 ms"
                )
                print(f"memory, {args.page} open for {args.minutes:g} min of live updates:")
                samples = memory_over_time(
                    browser, hub.url, key, args.page, args.minutes, args.sample_s
                )
                browser.close()
            first, last = samples[0][1], samples[-1][1]
            print(
                f"JS heap after GC: {first:.2f} MiB at start, {last:.2f} MiB at the end "
                f"({last - first:+.2f} MiB); readings published: {live.sent}   "
                "target: no growth"
            )
        finally:
            live.stop()
            hub.stop()
            broker.stop()


if __name__ == "__main__":
    main()
