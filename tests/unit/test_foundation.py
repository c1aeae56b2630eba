"""Settings (CONTRACT §5), the SQLite helper and the event bus."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hub.cli import main
from hub.clock import FakeClock
from hub.events import EventBus
from hub.messages import AlertEvent, AlertStatus, Severity
from hub.ports import DeviceStatusEvent
from hub.settings import ConfigError, load_settings
from hub.sqlite import connect, migrate


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)


def test_defaults_match_the_contract() -> None:
    """Every CONTRACT §5 default is what the contract says."""
    s = load_settings()
    assert s.data_dir == Path.cwd() / "var"  # ./var, made absolute at start-up
    assert s.mqtt.url == ""
    assert s.mqtt.embedded
    assert s.mqtt.embedded_listen == "127.0.0.1:1883"
    assert s.mqtt.topic_prefix == "city"
    assert s.mqtt.client_id == "hub"
    assert s.store.backend == "embedded"
    assert s.influx.api == "v1"
    assert s.influx.database == "hub"
    assert s.ingest.unknown_devices == "accept"
    assert s.ingest.max_payload_bytes == 64 * 1024
    assert s.rules.paths == ["rules"]
    assert (s.api.host, s.api.port) == ("127.0.0.1", 8080)


def test_environment_nested_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """HUB_* variables nest with __ and HUB_RULES__PATHS splits on commas."""
    monkeypatch.setenv("HUB_MQTT__URL", "mqtt://u:p@broker:1884")
    monkeypatch.setenv("HUB_RULES__PATHS", "rules, /etc/hub/rules ,")
    monkeypatch.setenv("HUB_INFLUX__TOKEN", "t0k3n-xyz")
    monkeypatch.setenv("HUB_API__PORT", "9090")
    s = load_settings()
    assert s.mqtt.url == "mqtt://u:p@broker:1884"
    assert not s.mqtt.embedded
    assert s.rules.paths == ["rules", "/etc/hub/rules"]
    assert s.influx.token is not None
    assert s.influx.token.get_secret_value() == "t0k3n-xyz"
    assert "t0k3n" not in repr(s)
    assert s.api.port == 9090


def test_data_dir_is_absolute_from_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative HUB_DATA_DIR is made absolute once, against the working directory at
    start-up, so a later change of directory (or a child process) means the same place."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUB_DATA_DIR", "state/../var")
    s = load_settings()
    assert s.data_dir == tmp_path / "var"
    monkeypatch.chdir("/")
    assert s.data_dir == tmp_path / "var"
    monkeypatch.setenv("HUB_DATA_DIR", "~/hub-data")
    assert load_settings().data_dir == Path.home() / "hub-data"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mqtt://hub:s3cret@broker:notaport", "port"),
        ("mqtt://hub:s3cret@:1883", "mqtt://"),
        ("http://hub:s3cret@broker:1883", "mqtt://"),
    ],
)
def test_bad_mqtt_url_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, url: str, fragment: str
) -> None:
    """A malformed HUB_MQTT__URL is a configuration error that never quotes its password."""
    monkeypatch.setenv("HUB_MQTT__URL", url)
    with pytest.raises(ConfigError, match=r"mqtt\.url") as caught:
        load_settings()
    assert fragment in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_store_writer_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """HUB_STORE__WRITER: "auto" runs the embedded store's writer in its own process when
    the hub may use two cores (InfluxDB's stays inline), "process" and "inline" force
    it, anything else is refused."""
    assert load_settings().store.writer == "auto"
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert not load_settings().store.writer_in_process
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert load_settings().store.writer_in_process
    monkeypatch.setenv("HUB_STORE__BACKEND", "influxdb")
    monkeypatch.setenv("HUB_INFLUX__URL", "http://127.0.0.1:8086")
    assert not load_settings().store.writer_in_process
    monkeypatch.setenv("HUB_STORE__WRITER", "inline")
    assert not load_settings().store.writer_in_process
    monkeypatch.setenv("HUB_STORE__WRITER", "process")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert load_settings().store.writer_in_process
    monkeypatch.setenv("HUB_STORE__WRITER", "thread")
    with pytest.raises(ConfigError, match="writer"):
        load_settings()


def test_config_file_under_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config values apply, and the environment wins over them."""
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("data_dir: /srv/hub\nmqtt:\n  topic_prefix: town\napi:\n  port: 7000\n")
    monkeypatch.setenv("HUB_API__PORT", "7001")
    s = load_settings(cfg)
    assert s.data_dir == Path("/srv/hub")
    assert s.mqtt.topic_prefix == "town"
    assert s.api.port == 7001


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("mqtt:\n  url: http://x\n", "mqtt.url"),
        ("mqtt:\n  nope: 1\n", "mqtt.nope"),
        ("store:\n  backend: influxdb\n", "HUB_INFLUX__URL"),
        ("- a\n- b\n", "mapping"),
        ("mqtt: [unclosed\n", "hub.yaml"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    """A wrong setting names the setting (or file) instead of a traceback."""
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_settings(cfg)


def test_cli_reports_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hub --config bad.yaml rules check` exits 2 with the problem on stderr."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("api:\n  port: -1\n")
    assert main(["--config", str(cfg), "rules", "check"]) == 2
    assert "api.port" in capsys.readouterr().err


def test_migrations_apply_once(tmp_path: Path) -> None:
    """Each component's migrations run once, in order, and survive reopening."""
    conn = connect(tmp_path / "hub.db")
    steps = ["CREATE TABLE a (x INTEGER);\n", "ALTER TABLE a ADD COLUMN y TEXT;\n"]
    assert migrate(conn, "thing", steps[:1]) == 1
    assert migrate(conn, "thing", steps) == 2
    conn.close()
    conn = connect(tmp_path / "hub.db")
    assert migrate(conn, "thing", steps) == 2
    conn.execute("INSERT INTO a (x, y) VALUES (1, 'z')")
    assert conn.execute("SELECT y FROM a").fetchone()[0] == "z"


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    """A broken migration leaves neither its tables nor its version behind."""
    conn = connect(tmp_path / "hub.db")
    with pytest.raises(Exception, match="syntax"):
        migrate(conn, "thing", ["CREATE TABLE b (x INTEGER);\nTHIS IS NOT SQL;\n"])
    assert migrate(conn, "thing", []) == 0
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "b" not in names


def test_fake_clock_moves_only_forward() -> None:
    """The fake clock advances when told and refuses to go back."""
    clock = FakeClock(1_000)
    clock.advance(1.5)
    assert clock.now_ms() == 2_500
    assert clock.monotonic() == 1.5
    with pytest.raises(ValueError):
        clock.set_ms(2_000)


async def test_event_bus_slow_subscriber_loses_oldest_only() -> None:
    """A full subscriber queue drops its oldest events; publish never blocks."""
    bus = EventBus(queue_size=2)
    stream = bus.subscribe()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # let the subscription register (not a timing wait)
    assert bus.subscribers == 1
    events = [DeviceStatusEvent(f"dev{i}", "d01", "manhole", "online", i) for i in range(4)]
    for e in events:
        bus.publish(e)
    got = [await first, await anext(stream)]
    assert bus.dropped == 2
    assert got == [events[2], events[3]]
    alert = AlertEvent("a1", "r", AlertStatus.FIRING, Severity.CRITICAL, "d01", "x", "s", 1, "sum")
    bus.publish(alert)
    assert await anext(stream) == alert
    await stream.aclose()
    assert bus.subscribers == 0


async def test_closing_the_event_bus_ends_every_subscription() -> None:
    """close() (the hub stopping) ends live subscriptions after what they had queued, and
    a subscription begun afterwards ends at once: live streams finish their responses."""
    bus = EventBus(queue_size=2)
    stream = bus.subscribe()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # let the subscription register (not a timing wait)
    event = DeviceStatusEvent("dev1", "d01", "manhole", "online", 1)
    bus.publish(event)
    bus.close()
    assert await first == event
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert bus.subscribers == 0
    with pytest.raises(StopAsyncIteration):
        await anext(bus.subscribe())


def test_databases_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """connect() makes the database and its -wal and -shm files 0600 and a new folder
    0700, even under a permissive umask (the hub embedded in another program)."""
    before = os.umask(0o022)
    try:
        conn = connect(tmp_path / "state" / "hub.db")
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
        files = [tmp_path / "state" / n for n in ("hub.db", "hub.db-wal", "hub.db-shm")]
        assert all(f.exists() for f in files)
        assert [oct(f.stat().st_mode & 0o777) for f in files] == [oct(0o600)] * 3
        assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
        conn.close()
    finally:
        os.umask(before)
