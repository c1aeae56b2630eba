"""`hub demo`'s resident memory and CPU over time (issue 6).

Runs `hub demo` with the defaults (320 devices) on a temp data dir and free ports,
samples the resident memory of the demo process and of its children (the
Mosquitto child when it is the embedded broker) every 30 s, then stops it with
SIGINT and prints the exit code.

    python3 bench/demo_memory.py                       # 10 minutes, broker chosen as usual
    python3 bench/demo_memory.py --broker amqtt        # the in-process fallback
    python3 bench/demo_memory.py --minutes 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.test_demo import Demo  # noqa: E402
from tests.services import free_port  # noqa: E402

SAMPLE_S = 30.0


def main() -> None:
    """Run the demo, print a sample line every 30 s and the figures at the end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    demo = Demo(workdir / "var", free_port(), free_port(), HUB_MQTT__EMBEDDED_BROKER=args.broker)
    try:
        demo.key(timeout=90)
        proc = psutil.Process(demo.proc.pid)
        start = time.monotonic()
        cpu0 = proc.cpu_times()
        samples: list[tuple[float, float, float]] = []
        while True:
            elapsed = time.monotonic() - start
            children = proc.children(recursive=True)
            own = proc.memory_info().rss / 2**20
            kids = sum(c.memory_info().rss for c in children) / 2**20
            samples.append((elapsed, own, kids))
            print(f"{elapsed:6.0f} s: demo {own:.0f} MiB, children {kids:.0f} MiB", flush=True)
            if elapsed >= args.minutes * 60:
                break
            time.sleep(min(SAMPLE_S, args.minutes * 60 - elapsed))  # sampling cadence
        cpu1 = proc.cpu_times()
        cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        wall = time.monotonic() - start
        rc = demo.interrupt()
        first, last = samples[min(1, len(samples) - 1)], samples[-1]
        print(
            f"hub demo ({args.broker} broker): {first[1]:.0f} MiB resident after "
            f"{first[0]:.0f} s, {last[1]:.0f} MiB after {last[0] / 60:.0f} min "
            f"(children {last[2]:.0f} MiB); demo process CPU {cpu / wall:.2f} of a core; "
            f"SIGINT exit code {rc}"
        )
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
