"""Rule engine benchmark (issue 3): 1,000 rules of mixed kinds over 100,000 series.

100 asset types x 10 rules (4 threshold, 2 rate_of_change, 1 flatline, 1 anomaly,
1 composite, 1 no_data) = 1,000 rules; 10,000 devices (100 per asset type), each
matched by its type's 10 rules = 100,000 series (plus the built-in sensor-fault
rule's 10,000). Prints, on one core (this process, one thread):

* rule evaluations per second (one evaluation = one rule applied to one reading),
  and microseconds of engine CPU per reading;
* bytes of state per series in steady state (windows full), measured with
  tracemalloc over everything the engine allocates (series, windows, indexes, caches);
* size and CPU time of the restart snapshot, and of restoring it;
* engine CPU per reading with the shipped rule packs (rules/) on typical readings of
  every asset type: compare with the ingest pipeline's CPU per reading (bench/ingest.py).

    python3 bench/rules.py                          # full size
    python3 bench/rules.py --devices 2000 --rounds 20   # quick

Targets: >= 100,000 evaluations/s and <= 2 KB of state per series.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.messages import Reading  # noqa: E402
from hub.rules.engine import RuleEngine  # noqa: E402
from hub.rules.model import RULE_ADAPTER, RuleModel  # noqa: E402

T0 = 1_764_000_000_000
INTERVAL_MS = 60_000


def make_rules(types: int) -> list[RuleModel]:
    """10 rules of mixed kinds per asset type."""
    docs: list[dict[str, object]] = []
    for t in range(types):
        at = f"t{t:03d}"
        m = {"asset_type": at}
        base: dict[str, object] = {"match": m, "severity": "warning"}
        for i, (op, value) in enumerate([(">", 80), (">=", 90), ("<", 5), ("<=", 2)]):
            docs.append(
                {
                    **base,
                    "id": f"{at}-thr{i}",
                    "kind": "threshold",
                    "metric": "a",
                    "op": op,
                    "value": value,
                    "for": "2m" if i % 2 else "0",
                }
            )
        docs.append(
            {
                **base,
                "id": f"{at}-roc0",
                "kind": "rate_of_change",
                "metric": "a",
                "window": "10m",
                "op": ">=",
                "value": 30,
            }
        )
        docs.append(
            {
                **base,
                "id": f"{at}-roc1",
                "kind": "rate_of_change",
                "metric": "b",
                "window": "5m",
                "mode": "percent",
                "op": "<=",
                "value": -40,
            }
        )
        docs.append(
            {
                **base,
                "id": f"{at}-flat",
                "kind": "flatline",
                "metric": "b",
                "duration": "30m",
                "epsilon": 0.001,
            }
        )
        docs.append(
            {
                **base,
                "id": f"{at}-anom",
                "kind": "anomaly",
                "metric": "a",
                "max_samples": 30,
                "min_samples": 10,
                "z": 6,
            }
        )
        docs.append(
            {
                **base,
                "id": f"{at}-comp",
                "kind": "composite",
                "all": [
                    {"metric": "a", "op": ">", "value": 70},
                    {"metric": "b", "of": "change_pct", "window": "5m", "op": ">=", "value": 50},
                ],
            }
        )
        docs.append({**base, "id": f"{at}-quiet", "kind": "no_data", "intervals": 3})
    return [RULE_ADAPTER.validate_python(d) for d in docs]


def make_readings(devices: int, types: int, rounds: int, seed: int = 7) -> list[Reading]:
    """``rounds`` readings per device, one a minute, devices interleaved."""
    rng = random.Random(seed)
    out = []
    for r in range(rounds):
        for d in range(devices):
            at = f"t{d % types:03d}"
            a = 40 + 10 * rng.random() + (50 if rng.random() < 0.01 else 0)
            b = 100 + rng.random()
            out.append(
                Reading(
                    f"d{d % 20:02d}", at, f"dev{d:05d}", T0 + r * INTERVAL_MS + d, {"a": a, "b": b}
                )
            )
    return out


#: Typical readings per asset type, for the shipped-packs figure.
TYPICAL: dict[str, dict[str, float | bool]] = {
    "flood_gauge": {"water_level_m": 1.2, "rainfall_mm_h": 0.5, "battery_v": 3.7},
    "water_main": {"pressure_bar": 4.0, "flow_l_s": 40.0, "battery_v": 3.7},
    "bridge": {"strain_ue": 120.0, "vibration_mm_s": 1.5, "temperature_c": 12.0},
    "manhole": {"methane_pct_lel": 0.5, "h2s_ppm": 0.2, "water_level_m": 0.1, "battery_v": 3.7},
    "air_quality": {
        "pm2_5_ug_m3": 12.0,
        "pm10_ug_m3": 20.0,
        "no2_ug_m3": 30.0,
        "temperature_c": 12.0,
        "humidity_pct": 60.0,
    },
    "streetlight": {"power_w": 60.0, "voltage_v": 230.0, "lamp_on": True},
    "traffic_counter": {"vehicles_per_min": 20.0, "avg_speed_kmh": 40.0},
}


def shipped_packs_cost(devices: int, rounds: int) -> tuple[float, float]:
    """Engine CPU per reading (us) and rules per reading with the default rule packs."""
    from hub.rules.loader import load_rules

    rules = load_rules([REPO / "rules"]).rules
    engine = engine_for(rules)
    rng = random.Random(3)
    types = list(TYPICAL)
    readings = []
    for r in range(rounds):
        for d in range(devices):
            at = types[d % len(types)]
            metrics = {
                k: (v if isinstance(v, bool) else v * (1 + 0.02 * rng.random()))
                for k, v in TYPICAL[at].items()
            }
            readings.append(
                Reading(f"d{d % 8:02d}", at, f"{at}-{d}", T0 + r * INTERVAL_MS + d, metrics)
            )
    for x in readings[:devices]:
        engine.evaluate(x)
    n0 = engine.evaluations
    cpu0 = time.process_time()
    for x in readings[devices:]:
        engine.evaluate(x)
    cpu = time.process_time() - cpu0
    n = len(readings) - devices
    return cpu / n * 1e6, (engine.evaluations - n0) / n


def engine_for(rules: list[RuleModel]) -> RuleEngine:
    return RuleEngine(rules, late_tolerance_s=300, expected_interval_s=lambda _a: 60.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--types", type=int, default=100, help="asset types (10 rules each)")
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=40, help="readings per device")
    args = p.parse_args()

    rules = make_rules(args.types)
    readings = make_readings(args.devices, args.types, args.rounds)
    print(f"{len(rules)} rules, {args.devices} devices, {len(readings)} readings")

    # Throughput: first round creates the series (warm-up), the rest is timed.
    engine = engine_for(rules)
    warm = args.devices
    for r in readings[:warm]:
        engine.evaluate(r)
    gc.collect()
    evals0 = engine.evaluations
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    events = 0
    for r in readings[warm:]:
        events += len(engine.evaluate(r))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    evals = engine.evaluations - evals0
    n = len(readings) - warm
    print(f"evaluations: {evals} in {cpu:.2f} s CPU ({wall:.2f} s wall), {events} events")
    print(f"evaluations/s (one core): {evals / cpu:,.0f}")
    print(f"engine CPU per reading: {cpu / n * 1e6:.1f} us ({evals / n:.1f} rules per reading)")
    t0 = time.process_time()
    engine.tick(readings[-1].ts_ms + INTERVAL_MS)
    print(f"tick() over {engine.series_count()} series: {(time.process_time() - t0) * 1000:.1f} ms")
    del engine

    # Memory: a fresh engine, fed until windows are full, under tracemalloc.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = engine_for(rules)
    for r in readings:
        engine.evaluate(r)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    series = engine.series_count()
    per = (after - before) / series
    print(f"series: {series}; state: {(after - before) / 1e6:.1f} MB, {per:,.0f} bytes per series")
    t0 = time.process_time()
    snap = engine.snapshot()
    t_snap = time.process_time() - t0
    t0 = time.process_time()
    engine_for(rules).restore(snap)
    t_restore = time.process_time() - t0
    print(
        f"snapshot (restart state): {len(snap) / 1e6:.1f} MB in {t_snap:.2f} s,"
        f" restore {t_restore:.2f} s"
    )
    us, per_reading = shipped_packs_cost(min(args.devices, 7000), 20)
    print(
        f"shipped rule packs (rules/): {us:.1f} us engine CPU per reading"
        f" ({per_reading:.1f} rules per reading)"
    )
    ok = evals / cpu >= 100_000 and per <= 2048
    print(
        f"targets (>= 100,000 evaluations/s, <= 2,048 bytes/series): {'met' if ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
