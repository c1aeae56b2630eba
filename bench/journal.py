"""Journal and storage micro-benchmarks (issue 2): what one reading costs on the way to disk.

Prints:

* record codec: ``hub.records`` encode + decode, µs per reading;
* line protocol: ``hub.store.line_protocol.reading_to_line``, µs per reading;
* journal appends: readings/s with group commit from several concurrent
  producers (as ingest batches arrive), commits and fsyncs, append latency
  p50 / p99;
* journal reads: readings/s one consumer drains;
* embedded store: readings/s written to SQLite in batches, and the time of the
  API's typical query (one device, one day, hourly mean).

    python3 bench/journal.py                     # full size
    python3 bench/journal.py --readings 20000    # quick

Target: the journal and the store each well above 15,000 readings/s on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub import records  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.journal import Journal  # noqa: E402
from hub.messages import Reading  # noqa: E402
from hub.settings import JournalSettings  # noqa: E402
from hub.store.base import TelemetryQuery  # noqa: E402
from hub.store.embedded import EmbeddedStore  # noqa: E402
from hub.store.line_protocol import reading_to_line  # noqa: E402

BASE = 1_764_000_000_000


def sample_readings(n: int, devices: int = 2000) -> list[Reading]:
    """Air-quality readings (five metrics, seq) spread over ``devices`` devices."""
    return [
        Reading(
            f"d0{i % 8 + 1}",
            "air_quality",
            f"aq-{i % devices:05d}",
            BASE + (i // devices) * 60_000,
            {
                "pm2_5_ug_m3": 12.5 + i % 17,
                "pm10_ug_m3": 20.25,
                "no2_ug_m3": 31.0 + i % 5,
                "temperature_c": 11.5,
                "humidity_pct": 81.0,
            },
            seq=i // devices,
            received_ms=BASE + i,
        )
        for i in range(n)
    ]


def bench_codec(readings: list[Reading]) -> None:
    """µs per reading for records.encode + decode, and for line protocol."""
    n = min(len(readings), 50_000)
    sample = readings[:n]
    start = time.perf_counter()
    blobs = [records.encode(r) for r in sample]
    enc = time.perf_counter() - start
    start = time.perf_counter()
    for blob in blobs:
        records.decode(blob)
    dec = time.perf_counter() - start
    start = time.perf_counter()
    for r in sample:
        reading_to_line(r)
    lp = time.perf_counter() - start
    size = statistics.mean(len(b) for b in blobs)
    codec = "orjson" if records._fast_dumps is not None else "stdlib json"
    print(
        f"records codec : encode {enc / n * 1e6:.2f} µs + decode {dec / n * 1e6:.2f} µs "
        f"= {(enc + dec) / n * 1e6:.2f} µs/reading ({size:.0f} bytes/record, {codec})"
    )
    print(f"line protocol : {lp / n * 1e6:.2f} µs/reading")


async def bench_journal(readings: list[Reading], args: argparse.Namespace, folder: Path) -> None:
    """Group-committed appends from concurrent producers, then one consumer's drain."""
    blobs = [records.encode(r) for r in readings]
    batches = [blobs[i : i + args.batch] for i in range(0, len(blobs), args.batch)]
    settings = JournalSettings(commit_interval_ms=args.commit_ms)
    latencies: list[float] = []
    async with Journal(folder / "journal", settings, clock=SystemClock()) as journal:
        queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)

        async def producer() -> None:
            while not queue.empty():
                batch = queue.get_nowait()
                began = time.perf_counter()
                await journal.append(batch)
                latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(args.producers)))
        elapsed = time.perf_counter() - start
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(
            f"journal append: {len(blobs) / elapsed:,.0f} readings/s "
            f"({args.producers} producers, batches of {args.batch}, "
            f"commit interval {args.commit_ms} ms): {journal.counters.commits} commits, "
            f"{journal.fsync_count} fsyncs, append latency p50 {p50:.1f} ms p99 {p99:.1f} ms"
        )
        reader = journal.reader("bench")
        start = time.perf_counter()
        got = 0
        while got < len(blobs):
            batch = await reader.read(5000, 1.0)
            got += len(batch.records)
            reader.commit(batch.end_offset)
        elapsed = time.perf_counter() - start
        print(f"journal read  : {got / elapsed:,.0f} readings/s (one consumer, 5000 per read)")


async def bench_embedded(readings: list[Reading], folder: Path) -> None:
    """Embedded store write rate in batches of 5000, and a one-device one-day query."""
    store = EmbeddedStore(folder / "telemetry.db")
    await store.open()
    try:
        start = time.perf_counter()
        for i in range(0, len(readings), 5000):
            await store.write(readings[i : i + 5000])
        elapsed = time.perf_counter() - start
        print(
            f"embedded store: {len(readings) / elapsed:,.0f} readings/s written (batches of 5000)"
        )
        day = [
            Reading(
                "d01", "air_quality", "aq-day", BASE + i * 60_000, {"pm2_5_ug_m3": float(i % 40)}
            )
            for i in range(1440)
        ]
        await store.write(day)
        query = TelemetryQuery(
            "air_quality", "aq-day", BASE, BASE + 86_400_000, ["pm2_5_ug_m3"], 3_600_000, "mean"
        )
        start = time.perf_counter()
        points = await store.query(query)
        took = (time.perf_counter() - start) * 1000
        print(
            f"embedded query: one device, one day, hourly mean: {took:.1f} ms"
            f" ({len(points)} points)"
        )
    finally:
        await store.close()


def main() -> None:
    """Parse arguments, run every benchmark once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument(
        "--batch", type=int, default=100, help="readings per append (an MQTT batch)"
    )
    parser.add_argument("--producers", type=int, default=8, help="concurrent appenders")
    parser.add_argument("--commit-ms", type=int, default=5, help="group commit interval")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args()
    readings = sample_readings(args.readings)
    bench_codec(readings)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        asyncio.run(bench_journal(readings, args, folder))
        asyncio.run(bench_embedded(readings, folder))


if __name__ == "__main__":
    main()
