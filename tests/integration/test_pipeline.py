"""The whole lossless pipeline, as deployed: `hub run` against real Mosquitto and InfluxDB.

Issue 2's acceptance tests: every reading published reaches the store exactly as
sent (single, batch and SenML), malformed input ends in dead letters without
losing anything else, and neither an InfluxDB outage, a SIGKILL of the hub nor a
broker restart loses a reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from hub.clock import SystemClock
from hub.settings import load_settings
from hub.store.factory import make_store
from tests.conftest import Names
from tests.hubproc import BackgroundFlow, HubProcess, Publisher, env_for
from tests.services import InfluxDB1, Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE_TS = 1_764_178_200_000  # 2025-11-26T17:30:00Z


def _recent_base() -> int:
    """A base time inside the accepted window (not older than 30 days)."""
    import time

    return (int(time.time()) - 3600) * 1000


def _mixed(
    prefix: str, names: Names, devices: int, per_device: int
) -> tuple[list[tuple[str, Any]], dict[str, list[tuple[int, int | None, float]]]]:
    """Messages (a third single, a third batch, a third SenML) and what must be stored."""
    base = _recent_base()
    messages: list[tuple[str, Any]] = []
    expected: dict[str, list[tuple[int, int | None, float]]] = {}
    for i in range(devices):
        device = names.device(i)
        district = names.district(i % 4)
        topic = f"{prefix}/{district}/flood_gauge/{device}/telemetry"
        rows = [(base + i * 7 + k * 1000, k, round(i + k / 1000, 6)) for k in range(per_device)]
        mode = i % 3
        if mode == 0:
            for ts, seq, value in rows:
                messages.append(
                    (topic, {"ts": ts, "seq": seq, "metrics": {"water_level_m": value}})
                )
            expected[device] = [(ts, seq, v) for ts, seq, v in rows]
        elif mode == 1:
            for start in range(0, len(rows), 5):
                chunk = rows[start : start + 5]
                messages.append(
                    (
                        topic,
                        {
                            "readings": [
                                {"ts": ts, "seq": seq, "metrics": {"water_level_m": v}}
                                for ts, seq, v in chunk
                            ]
                        },
                    )
                )
            expected[device] = [(ts, seq, v) for ts, seq, v in rows]
        else:
            # SenML: base name, base time in seconds, relative times; no seq in SenML.
            bt = rows[0][0] / 1000
            senml: list[dict[str, Any]] = [{"bn": f"{device}:", "bt": bt, "bu": "m"}]
            for ts, _seq, v in rows:
                senml.append({"n": "water_level_m", "t": round(ts / 1000 - bt, 3), "v": v})
            messages.append((topic, senml))
            expected[device] = [(ts, None, v) for ts, _seq, v in rows]
    return messages, expected


async def _stored(env: dict[str, str], device_ids: set[str]) -> dict[str, list[tuple[int, Any]]]:
    """Every reading of the store the hub writes to, per device (via the store protocol)."""
    import os

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    store = make_store(settings, SystemClock())
    await store.open()
    out: dict[str, list[tuple[int, Any]]] = {}
    try:
        async for reading in store.history(0, 2**62):
            if reading.device_id in device_ids:
                out.setdefault(reading.device_id, []).append(
                    (reading.ts_ms, reading.metrics.get("water_level_m"))
                )
    finally:
        await store.close()
    return out


@pytest.fixture
def hub_env(
    request: pytest.FixtureRequest,
    mosquitto: Mosquitto,
    influxdb: InfluxDB1,
    names: Names,
    tmp_path: Path,
) -> dict[str, str]:
    """Settings for a hub writing to InfluxDB (or the embedded store, by parameter)."""
    backend = getattr(request, "param", "influxdb")
    extra = {"HUB_STORE__BACKEND": backend, "HUB_DATA_DIR": str(tmp_path / "hub")}
    if backend == "influxdb":
        extra |= {"HUB_INFLUX__URL": influxdb.url, "HUB_INFLUX__DATABASE": names.database()}
    return env_for(names.topic_prefix(), mosquitto.url, **extra)


@pytest.mark.parametrize("hub_env", ["influxdb", "embedded"], indirect=True)
def test_every_reading_lands_exactly_once(
    hub_env: dict[str, str], mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """N readings as single, batch and SenML messages -> exactly N points, as sent."""
    hub = HubProcess(tmp_path / "hub", hub_env)
    hub.start()
    try:
        prefix = names.topic_prefix()
        messages, expected = _mixed(prefix, names, devices=30, per_device=40)
        total = sum(len(v) for v in expected.values())
        pub = Publisher(mosquitto.url)
        pub.publish_many(messages)
        pub.wait_all()
        pub.close()

        def all_stored() -> dict[str, list[tuple[int, Any]]] | None:
            got = asyncio.run(_stored(hub_env, set(expected)))
            return got if sum(len(v) for v in got.values()) >= total else None

        got = wait_for(all_stored, timeout=60, interval=0.5, what=f"{total} points")
        assert isinstance(got, dict)
        for device, rows in expected.items():
            assert sorted(got[device]) == sorted((ts, v) for ts, _s, v in rows), device
        assert sum(len(v) for v in got.values()) == total
    finally:
        assert hub.stop() == 0, hub.log_tail()


def test_influx_layout_matches_the_contract(
    hub_env: dict[str, str], mosquitto: Mosquitto, influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """measurement = asset_type; tags district, device_id; fields metrics + seq; ms timestamp."""
    hub = HubProcess(tmp_path / "hub", hub_env)
    hub.start()
    try:
        prefix, device, db = names.topic_prefix(), names.device(1), names.database()
        ts = _recent_base() + 123
        pub = Publisher(mosquitto.url)
        pub.publish(
            f"{prefix}/d07/manhole/{device}/telemetry",
            {
                "ts": ts,
                "seq": 42,
                "metrics": {"methane_pct_lel": 3.5, "h2s_ppm": 1, "lid_open": False},
            },
        )
        pub.wait_all()
        pub.close()
        wait_for(lambda: influxdb.count(db, "manhole", "seq") == 1, timeout=30, what="point")
        data = influxdb.query(f"SELECT * FROM \"manhole\" WHERE device_id = '{device}'", db)
        series = data["results"][0]["series"][0]  # type: ignore[index]
        row = dict(zip(series["columns"], series["values"][0], strict=True))
        assert row["time"] == ts
        assert row["district"] == "d07"
        assert row["device_id"] == device
        assert row["seq"] == 42
        assert row["methane_pct_lel"] == 3.5
        assert row["h2s_ppm"] == 1
        assert row["lid_open"] is False
        keys = influxdb.query('SHOW TAG KEYS FROM "manhole"', db)
        tag_keys = {v[0] for v in keys["results"][0]["series"][0]["values"]}  # type: ignore[index]
        assert tag_keys == {"district", "device_id"}
    finally:
        assert hub.stop() == 0, hub.log_tail()


MALFORMED: list[tuple[str, bytes, str]] = [
    # (topic suffix or full topic marker, payload, expected reason)
    ("ok", b"{not json", "invalid_json"),
    ("ok", b"\xff\xfe{}", "invalid_utf8"),
    ("ok", b'{"metrics": {"water_level_m": "high"}}', "bad_metric_value"),
    # NaN and Infinity are not JSON (RFC 8259), so they never reach metric validation.
    ("ok", b'{"metrics": {"water_level_m": NaN}}', "invalid_json"),
    ("ok", b'{"metrics": {"water_level_m": Infinity}}', "invalid_json"),
    ("ok", b'{"metrics": {"water_level_m": {"v": 1}}}', "bad_metric_value"),
    ("ok", b'{"metrics": {}}', "no_metrics"),
    ("ok", b'{"ts": 99999999999999, "metrics": {"water_level_m": 1}}', "ts_future"),
    ("ok", b'{"ts": 1000, "metrics": {"water_level_m": 1}}', "ts_too_old"),
    ("ok", b'{"seq": -1, "metrics": {"water_level_m": 1}}', "bad_seq"),
    ("ok", b'{"metrics": {"Bad-Name": 1}}', "bad_metric_name"),
    ("ok", b'[{"bn": "x:", "n": "water_level_m"}]', "bad_senml"),
    ("ok", b"x" * 70_000, "oversize"),
    ("bad", b'{"metrics": {"water_level_m": 1}}', "bad_topic"),
]


def test_malformed_input_goes_to_dead_letters_and_nothing_else_is_lost(
    hub_env: dict[str, str], mosquitto: Mosquitto, influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """Malformed messages interleaved with good ones: good stored, bad kept with reason."""
    hub = HubProcess(tmp_path / "hub", hub_env)
    hub.start()
    try:
        prefix, db = names.topic_prefix(), names.database()
        good_topic = f"{prefix}/d01/flood_gauge/{names.device(0)}/telemetry"
        bad_topic = f"{prefix}/alerts/flood_gauge/{names.device(0)}/telemetry"
        base = _recent_base()
        pub = Publisher(mosquitto.url)
        good = 0
        for i, (where, payload, _reason) in enumerate(MALFORMED):
            pub.publish(
                good_topic, {"ts": base + i, "seq": good, "metrics": {"water_level_m": 1.5}}
            )
            good += 1
            pub.publish(good_topic if where == "ok" else bad_topic, payload)
        # A batch with one bad reading among good ones keeps the good ones.
        pub.publish(
            good_topic,
            {
                "readings": [
                    {"ts": base + 100, "seq": good, "metrics": {"water_level_m": 2.0}},
                    {"ts": base + 101, "seq": good + 1, "metrics": {"water_level_m": "x"}},
                    {"ts": base + 102, "seq": good + 2, "metrics": {"water_level_m": 2.2}},
                ]
            },
        )
        good += 2
        pub.wait_all()
        pub.close()
        wait_for(lambda: influxdb.count(db, "flood_gauge") == good, timeout=30, what="good points")
        expected = [r for _w, _p, r in MALFORMED] + ["bad_metric_value"]

        def dead_letters() -> list[dict[str, Any]] | None:
            items = hub.get("/api/v1/dead-letters", limit=100)
            items = items["items"] if isinstance(items, dict) else items
            return items if len(items) >= len(expected) else None

        items = wait_for(dead_letters, timeout=30, what="dead letters")
        assert isinstance(items, list)
        assert sorted(i["reason"] for i in items) == sorted(expected)
        assert all(len(i["payload"]) <= 2048 for i in items)
        health = hub.health()
        assert health["checks"]["tasks"]["running"] is True
        assert influxdb.count(db, "flood_gauge") == good
        # Prometheus shows the rejections by reason, and the event-loop lag probe runs.
        text = httpx.get(f"{hub.url}/metrics", timeout=5).text
        samples = dict(
            line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
        assert float(samples['hub_rejected_total{reason="invalid_json"}']) >= 1
        assert float(samples["hub_event_loop_lag_seconds_count"]) >= 1
    finally:
        assert hub.stop() == 0, hub.log_tail()


def _flow_devices(names: Names, n: int) -> list[tuple[str, str, str]]:
    return [(names.district(i % 3), "flood_gauge", names.device(i)) for i in range(n)]


def _seqs_in_influx(influx: InfluxDB1, db: str) -> dict[str, set[int]]:
    data = influx.query('SELECT "seq", "device_id" FROM "flood_gauge"', db)
    out: dict[str, set[int]] = {}
    for series in data["results"][0].get("series", []):  # type: ignore[index, union-attr]
        cols = series["columns"]
        for row in series["values"]:
            r = dict(zip(cols, row, strict=True))
            out.setdefault(r["device_id"], set()).add(int(r["seq"]))
    return out


def _assert_complete(influx: InfluxDB1, db: str, flow: BackgroundFlow, total: int) -> None:
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: influx.count(db, "flood_gauge") >= total, timeout=60, interval=0.5)
    seqs = _seqs_in_influx(influx, db)
    missing = {
        device: sorted(set(range(sent)) - seqs.get(device, set()))
        for device, sent in flow.sent.items()
    }
    assert not any(missing.values()), f"lost readings: {missing}"


def _influx_hub(
    names: Names, broker_url: str, influx: InfluxDB1, tmp_path: Path, **extra: str
) -> HubProcess:
    """A hub (not yet started) on ``broker_url`` writing to this test's InfluxDB database."""
    env = env_for(
        names.topic_prefix(),
        broker_url,
        HUB_STORE__BACKEND="influxdb",
        HUB_INFLUX__URL=influx.url,
        HUB_INFLUX__DATABASE=names.database(),
        **extra,
    )
    return HubProcess(tmp_path / "hub", env)


def test_influxdb_outage_loses_nothing(
    mosquitto: Mosquitto, own_influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """InfluxDB stopped for 30 s while readings flow, then restarted -> none lost."""
    db = names.database()
    hub = _influx_hub(names, mosquitto.url, own_influxdb, tmp_path)
    hub.start()
    flow = BackgroundFlow(mosquitto.url, names.topic_prefix(), _flow_devices(names, 10), rate=200)
    try:
        flow.start()
        wait_for(lambda: own_influxdb.count(db, "flood_gauge") > 100, timeout=30, what="flowing")
        own_influxdb.stop()
        wait_for(lambda: hub.health()["checks"]["store"]["writable"] is False, timeout=30)
        # The outage lasts while 30 s worth of readings (at 200/s) are published into it.
        during = sum(flow.sent.values()) + 30 * 200
        wait_for(lambda: sum(flow.sent.values()) >= during, timeout=60, interval=0.5)
        own_influxdb.start()
        total = flow.stop()
        _assert_complete(own_influxdb, db, flow, total)
        assert hub.health()["checks"]["store"]["writable"] is True
    finally:
        flow._stop.set()
        assert hub.stop() == 0, hub.log_tail()


def test_sigkill_of_the_hub_loses_nothing(
    mosquitto: Mosquitto, influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """The hub SIGKILLed while readings flow, then restarted -> none lost (by seq)."""
    db = names.database()
    hub = _influx_hub(names, mosquitto.url, influxdb, tmp_path)
    hub.start()
    flow = BackgroundFlow(mosquitto.url, names.topic_prefix(), _flow_devices(names, 10), rate=300)
    try:
        flow.start()
        wait_for(lambda: influxdb.count(db, "flood_gauge") > 200, timeout=30, what="flowing")
        hub.kill()
        hub.start()
        wait_for(lambda: influxdb.count(db, "flood_gauge") > 600, timeout=30, what="again")
        hub.kill()
        hub.start()
        total = flow.stop()
        _assert_complete(influxdb, db, flow, total)
    finally:
        flow._stop.set()
        assert hub.stop() == 0, hub.log_tail()


def _store_writer_pid(hub: HubProcess) -> int | None:
    assert hub.proc is not None
    for child in psutil.Process(hub.proc.pid).children():
        with contextlib.suppress(psutil.Error):
            if "hub.store.writer" in " ".join(child.cmdline()) and child.is_running():
                return int(child.pid)
    return None


def test_a_killed_store_writer_is_restarted_and_loses_nothing(
    mosquitto: Mosquitto, influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """The store writer process SIGKILLed while readings flow -> the hub starts another,
    which writes what the dead one had not landed; none lost, the hub keeps running."""
    db = names.database()
    hub = _influx_hub(names, mosquitto.url, influxdb, tmp_path, HUB_STORE__WRITER="process")
    hub.start()
    flow = BackgroundFlow(mosquitto.url, names.topic_prefix(), _flow_devices(names, 10), rate=300)
    try:
        flow.start()
        wait_for(lambda: influxdb.count(db, "flood_gauge") > 200, timeout=30, what="flowing")
        first = _store_writer_pid(hub)
        assert first is not None, "no store writer process"
        os.kill(first, signal.SIGKILL)
        wait_for(
            lambda: _store_writer_pid(hub) not in (None, first),
            timeout=30,
            what="a new store writer process",
        )
        stored = influxdb.count(db, "flood_gauge")
        wait_for(lambda: influxdb.count(db, "flood_gauge") > stored + 300, timeout=30)
        total = flow.stop()
        _assert_complete(influxdb, db, flow, total)
        assert hub.health()["checks"]["store"]["writable"] is True
        assert "store writer process died" in hub.log_path.read_text(errors="replace")
    finally:
        flow._stop.set()
        assert hub.stop() == 0, hub.log_tail()


def test_broker_restart_reconnects_and_carries_on(
    own_mosquitto: Mosquitto, influxdb: InfluxDB1, names: Names, tmp_path: Path
) -> None:
    """The broker restarted -> the hub reconnects, resubscribes and stores new readings."""
    db = names.database()
    prefix = names.topic_prefix()
    hub = _influx_hub(names, own_mosquitto.url, influxdb, tmp_path, HUB_MQTT__RECONNECT_MAX_S="2")
    hub.start()
    try:
        topic = f"{prefix}/d01/flood_gauge/{names.device(0)}/telemetry"
        base = _recent_base()
        pub = Publisher(own_mosquitto.url)
        pub.publish(topic, {"ts": base, "seq": 0, "metrics": {"water_level_m": 1}})
        pub.wait_all()
        pub.close()
        wait_for(lambda: influxdb.count(db, "flood_gauge") == 1, timeout=30)
        own_mosquitto.restart()
        wait_for(lambda: hub.health()["checks"]["broker"]["connected"], timeout=30)
        pub = Publisher(own_mosquitto.url)
        pub.publish(topic, {"ts": base + 1, "seq": 1, "metrics": {"water_level_m": 2}})
        pub.wait_all()
        pub.close()
        wait_for(lambda: influxdb.count(db, "flood_gauge") == 2, timeout=30)
    finally:
        assert hub.stop() == 0, hub.log_tail()


def test_status_birth_and_last_will_reach_the_registry(
    hub_env: dict[str, str], mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """Retained birth marks a device online; its last will marks it offline."""
    hub = HubProcess(tmp_path / "hub", hub_env)
    hub.start()
    try:
        prefix, device = names.topic_prefix(), names.device(5)
        topic = f"{prefix}/d02/bridge/{device}/status"
        pub = Publisher(mosquitto.url)
        pub.publish(topic, json.dumps({"state": "online", "ts": _recent_base()}))
        pub.publish(
            f"{prefix}/d02/bridge/{device}/telemetry",
            {"seq": 0, "metrics": {"strain_ue": 120.5}},
        )
        pub.wait_all()
        wait_for(lambda: hub.get(f"/api/v1/devices/{device}")["status"] == "online", timeout=30)
        pub.publish(topic, json.dumps({"state": "offline", "ts": _recent_base() + 1}))
        pub.wait_all()
        pub.close()
        wait_for(lambda: hub.get(f"/api/v1/devices/{device}")["status"] == "offline", timeout=30)
        detail = hub.get(f"/api/v1/devices/{device}")
        assert detail["latest"]["strain_ue"] == 120.5
    finally:
        assert hub.stop() == 0, hub.log_tail()


@pytest.mark.parametrize("writer", ["process", "inline"])
def test_a_trickle_of_readings_is_stored_in_batches_by_age(
    mosquitto: Mosquitto, names: Names, tmp_path: Path, writer: str
) -> None:
    """Readings arriving one by one, each in its own journal commit, reach the store
    in one write per ``flush_interval_ms``, not one write per commit (which cost more
    CPU at 5,000 readings/s than everything else the hub does with them); with the
    store writer in its own process or in the hub's loop."""
    prefix = names.topic_prefix()
    env = env_for(
        prefix,
        mosquitto.url,
        HUB_STORE__BACKEND="embedded",
        HUB_DATA_DIR=str(tmp_path / "hub"),
        HUB_INFLUX__FLUSH_INTERVAL_MS="5000",
        HUB_STORE__WRITER=writer,
    )
    hub = HubProcess(tmp_path / "hub", env)
    hub.start()

    def samples() -> dict[str, float]:
        text = httpx.get(f"{hub.url}/metrics", timeout=5).text
        pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] not in ("", "#"))
        return {name: float(value) for name, value in pairs}

    try:
        pub = Publisher(mosquitto.url)
        topic = f"{prefix}/d01/flood_gauge/{names.device(1)}/telemetry"
        base = _recent_base()
        for i in range(12):
            pub.publish(topic, {"ts": base + i, "seq": i, "metrics": {"water_level_m": 1.0}})
            # The next one only once the hub has taken this one: a commit each.
            wait_for(
                lambda n=i + 1: samples().get("hub_readings_accepted_total", 0) >= n,
                timeout=10,
                what=f"reading {i} accepted",
            )
        pub.close()
        wait_for(
            lambda: samples().get("hub_store_points_written_total", 0) >= 12,
            timeout=30,
            what="12 points stored",
        )
        writes = samples()["hub_store_batch_size_count"]
        assert 1 <= writes <= 2, f"{writes:.0f} store writes for 12 readings"
    finally:
        assert hub.stop() == 0, hub.log_tail()
