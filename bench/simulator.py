"""Simulator benchmark: top QoS 1 publish rate per process against a real Mosquitto.

Starts a Mosquitto on a free loopback port (tests/services.py), then runs the fleet
flat out (``rate=0``: as fast as the broker acknowledges) in 1..P processes and
prints, per process, messages acknowledged per second over the run and in the best
1-second window, plus the total.

    python3 -m bench.simulator --devices 100 --seconds 10 --processes 1 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from devices.simulator import Fleet, FleetStats
from tests.services import Mosquitto


def _worker(
    url: str, devices: int, seconds: float, shard: tuple[int, int], senml: bool, out: Any
) -> None:
    async def go() -> FleetStats:
        fleet = Fleet(
            url, prefix="bench", devices=devices, districts=8, rate=0, senml=senml, shard=shard
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        return await fleet.run(stop)

    cpu0 = time.process_time()
    stats = asyncio.run(go())
    cpu = time.process_time() - cpu0
    out.put((shard[0], stats.acked, stats.elapsed_s, stats.top_rate, cpu))


def run(url: str, devices: int, seconds: float, processes: int, senml: bool) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, devices, seconds, (k, processes), senml, out))
        for k in range(processes)
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    wall = time.monotonic() - start
    total = 0.0
    for index, acked, elapsed, top, cpu in sorted(results):
        rate = acked / elapsed if elapsed else 0.0
        total += rate
        # msgs per CPU-second is what a process would do on a core of its own; on a
        # shared machine the wall-clock rate understates it.
        print(
            f"  process {index}: {acked} msgs acked in {elapsed:.1f} s = {rate:,.0f} msg/s "
            f"(top 1 s window {top:,.0f} msg/s); CPU {cpu:.1f} s = {acked / cpu:,.0f} msg "
            "per CPU-second"
        )
    print(
        f"  {processes} process(es), {devices} devices, {'SenML' if senml else 'JSON'}: "
        f"{total:,.0f} msg/s in all (wall {wall:.1f} s incl. start-up)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--senml", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            print(f"simulator benchmark: QoS 1 against Mosquitto at {broker.url}")
            for processes in args.processes:
                run(broker.url, args.devices, args.seconds, processes, args.senml)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
