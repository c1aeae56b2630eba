"""End-to-end ingest benchmark (issue 2): MQTT -> hub -> InfluxDB on this machine.

10,000 devices in 20 districts publish 200,000 QoS 1 readings through a real
Mosquitto into `hub run`, which stores them in a real InfluxDB 1.x. Prints, per
run and as the median of the runs: end-to-end rate (first publish -> last point
stored), readings lost, hub CPU seconds per 1,000 readings, hub peak RSS.

    python3 bench/ingest.py                      # 3 runs, full size
    python3 bench/ingest.py --runs 1 --readings 20000 --devices 1000
    python3 bench/ingest.py --profile            # + py-spy profile of the hub, summarised
    python3 bench/ingest.py --rules "$(mktemp -d)"   # the same with no rules: their CPU share

Target: >= 15,000 readings/s sustained, 0 lost, peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import publish_readings  # noqa: E402
from tests.hubproc import HubProcess, env_for  # noqa: E402
from tests.services import InfluxDB1, Mosquitto, wait_for  # noqa: E402


def _metric(text: str, name: str) -> float:
    """One sample's value from Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, as the kernel counted it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _store_writer(hub: psutil.Process, expected: bool) -> psutil.Process | None:
    """The hub's store writer process (started once the hub's store is open)."""
    deadline = time.monotonic() + (10.0 if expected else 0.0)
    while True:
        for child in hub.children():
            with contextlib.suppress(psutil.Error):
                if "hub.store.writer" in " ".join(child.cmdline()):
                    return child
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    times = proc.cpu_times()
    return float(times.user + times.system)


def one_run(args: argparse.Namespace, run: int, workdir: Path) -> dict[str, float]:
    """One full run on fresh Mosquitto, InfluxDB and hub data."""
    broker = Mosquitto(workdir / f"mosquitto-{run}")
    influx = InfluxDB1(workdir / f"influx-{run}")
    broker.start()
    influx.start()
    db = "bench"
    prefix = "bench"
    env = env_for(
        prefix,
        broker.url,
        HUB_STORE__BACKEND="influxdb",
        HUB_INFLUX__URL=influx.url,
        HUB_INFLUX__DATABASE=db,
        HUB_LOG__LEVEL="WARNING",
        HUB_API__METRICS_PUBLIC="true",
        HUB_RULES__PATHS=str(args.rules),
        HUB_STORE__WRITER=args.store_writer,
    )
    hub = HubProcess(workdir / f"hub-{run}", env)
    if args.profile:
        hub.wrap = [
            *("py-spy", "record", "--rate", "200", "--gil", "--format", "raw"),
            *("-o", str(args.profile_out), "--"),
        ]
    hub.start()
    assert hub.proc is not None
    proc = psutil.Process(hub.proc.pid)
    if args.profile:
        proc = next(
            (c for c in proc.children(recursive=True) if "hub run" in " ".join(c.cmdline())), proc
        )
    # The store writer process (HUB_STORE__WRITER) is the hub's too: its CPU and memory count.
    # ("auto" keeps InfluxDB's writes inline, and this benchmark writes to InfluxDB.)
    writer = _store_writer(proc, expected=args.store_writer == "process")
    cpu0 = _cpu(proc) + _cpu(writer)
    t0 = time.monotonic()
    figures = publish_readings(
        broker.url,
        prefix,
        devices=args.devices,
        districts=args.districts,
        total=args.readings,
        processes=args.processes,
    )
    published = time.monotonic()

    def stored() -> bool:
        return influx.count(db, "flood_gauge", "seq") >= args.readings

    def evaluated() -> bool:
        text = httpx.get(f"{hub.url}/metrics", timeout=5).text
        return _metric(text, "hub_readings_evaluated_total") >= args.readings

    with contextlib.suppress(TimeoutError):  # a shortfall is reported as "lost" below
        wait_for(stored, timeout=args.timeout, interval=0.2, what="all readings stored")
    t1 = time.monotonic()
    n = influx.count(db, "flood_gauge", "seq")
    # Sustained means every consumer keeps up: the rules must have seen each
    # reading too, or the journal only grows until back-pressure stops ingest.
    with contextlib.suppress(TimeoutError):
        wait_for(evaluated, timeout=args.timeout, interval=0.2, what="rules caught up")
    t2 = time.monotonic()
    cpu = _cpu(proc) + _cpu(writer) - cpu0
    writer_rss = _peak_rss_mb(writer.pid) if writer is not None else 0.0
    rss = _peak_rss_mb(proc.pid) + writer_rss
    if args.profile:
        # py-spy writes its file when the hub it watches exits.
        proc.terminate()
        assert hub.proc is not None
        hub.proc.wait(timeout=60)
    hub.stop()
    influx.stop()
    broker.stop()
    result = {
        "rate": n / (t1 - t0),
        "evaluated_rate": n / (t2 - t0),
        "publish_rate": figures.get("rate", args.readings / (published - t0)),
        "lost": args.readings - n,
        "cpu_per_1000": cpu / max(n, 1) * 1000,
        "peak_rss_mb": rss,
        "seconds": t1 - t0,
    }
    print(
        f"run {run}: {result['rate']:,.0f} readings/s end-to-end "
        f"({result['evaluated_rate']:,.0f}/s until the rules had seen them all) "
        f"(published at {result['publish_rate']:,.0f}/s), lost {result['lost']}, "
        f"hub CPU {result['cpu_per_1000']:.4f} s/1000 readings, peak RSS {rss:.0f} MB"
        f" (of which the store writer process {writer_rss:.0f} MB)",
        flush=True,
    )
    return result


def print_profile(collapsed: Path, top: int = 25) -> None:
    """Where the hub's CPU went: self time per function and time per pipeline stage.

    Reads py-spy's collapsed stacks ("frame;frame;frame count" per line; the
    flame graph tools read the same file).
    """
    self_time: Counter[str] = Counter()
    stage_time: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[_frame_name(frames[-1])] += n
        names = [_frame_name(f) for f in frames]
        stage = next((s for s in STAGES if any(s in name for name in names)), "other")
        stage_time[stage] += n
    if not total:
        print("profile: no samples")
        return
    print(f"profile ({total} samples at 200 Hz of the thread holding the GIL, {collapsed}):")
    print("  by stage:")
    for stage, n in stage_time.most_common():
        print(f"    {n / total:6.1%}  {stage}")
    print(f"  top {top} functions by self time:")
    for name, n in self_time.most_common(top):
        print(f"    {n / total:6.1%}  {name}")


# The tasks of hub.runtime, in pipeline order; a sample counts for the first that
# appears in its stack.
STAGES = (
    "mqtt_source",
    "_ingest ",
    "_ack ",
    "_store_consumer ",
    "_live_consumer ",
    "_timers ",
    "journal",
    "uvicorn",
)


def _frame_name(frame: str) -> str:
    """'func (hub/x.py:12)' -> 'func (hub/x.py)': lines would split one function."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    short = path.split("/site-packages/")[-1].split("/main/")[-1]
    return f"{name} ({short})"


def main() -> None:
    """Run the benchmark and print each run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--districts", type=int, default=20)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--rules",
        type=Path,
        default=REPO / "rules",
        help="rule folder the hub evaluates (an empty folder measures the pipeline without rules)",
    )
    parser.add_argument(
        "--store-writer",
        choices=["auto", "process", "inline"],
        default="auto",
        help="HUB_STORE__WRITER: the store sink in its own process or in the hub's loop",
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--profile-out", type=Path, default=REPO / "bench" / "out" / "ingest.collapsed.txt"
    )
    args = parser.parse_args()
    args.profile_out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        results = [one_run(args, run, workdir) for run in range(1, args.runs + 1)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.profile:
        print_profile(args.profile_out)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(
        f"median of {len(results)}: {med['rate']:,.0f} readings/s end-to-end "
        f"({med['evaluated_rate']:,.0f}/s evaluated by the rules), "
        f"lost {med['lost']:.0f}, hub CPU {med['cpu_per_1000']:.4f} s per 1000 readings, "
        f"peak RSS {med['peak_rss_mb']:.0f} MB "
        f"({args.readings:,} readings, {args.devices:,} devices, {args.districts} districts)"
    )


if __name__ == "__main__":
    main()
