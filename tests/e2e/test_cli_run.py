"""`hub run` as an operator meets it: taken ports, Ctrl-C with a dashboard open, a private
data dir. Each test starts the real command as a subprocess on its own data dir."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Names
from tests.hubproc import REPO, HubProcess, Publisher
from tests.services import env_without_hub, free_port, wait_for

pytestmark = pytest.mark.e2e

#: Generous: a start-up error must come at once, not after a hang.
ERROR_WITHIN_S = 60.0
#: A stop, dashboard connected or not (nothing to flush here but a few readings).
STOP_WITHIN_S = 10.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program (this test) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _run_hub(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        **env_without_hub(),
        "HUB_DATA_DIR": str(tmp_path / "var"),
        "HUB_RULES__MANAGED_DIR": str(tmp_path / "managed"),
        **settings,
    }
    return subprocess.run(
        [sys.executable, "-m", "hub", "run"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=ERROR_WITHIN_S,
        check=False,
    )


def test_run_with_the_broker_port_taken_names_both_settings(
    tmp_path: Path, taken_port: int
) -> None:
    """`hub run` on a taken embedded-broker port exits 1 with the error naming
    HUB_MQTT__EMBEDDED_LISTEN and HUB_MQTT__URL, and no traceback (CONTRACT §4, §5)."""
    done = _run_hub(
        tmp_path,
        HUB_MQTT__EMBEDDED_LISTEN=f"127.0.0.1:{taken_port}",
        HUB_API__PORT=str(free_port()),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"127.0.0.1:{taken_port} is already in use" in output
    assert "HUB_MQTT__EMBEDDED_LISTEN" in output
    assert "HUB_MQTT__URL" in output
    assert "Traceback" not in output


def test_run_with_the_api_port_taken_is_a_clear_error_before_anything_starts(
    tmp_path: Path, taken_port: int
) -> None:
    """`hub run` on a taken API port exits 1 at once, naming HUB_API__PORT; no broker was
    started and no traceback printed (it used to hang with a page of locals)."""
    done = _run_hub(
        tmp_path, HUB_MQTT__EMBEDDED_LISTEN="127.0.0.1:0", HUB_API__PORT=str(taken_port)
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"cannot start the API: 127.0.0.1:{taken_port} is already in use" in output
    assert "HUB_API__PORT" in output
    assert "embedded broker started" not in output
    assert "Traceback" not in output


class _Stream:
    """An open GET /api/v1/stream, read in a thread, as a dashboard holds it."""

    def __init__(self, url: str, key: str) -> None:
        self.lines: list[str] = []
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=None))
        self._request = self._client.build_request(
            "GET", f"{url}/api/v1/stream", headers={"Authorization": f"Bearer {key}"}
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            response = self._client.send(self._request, stream=True)
            try:
                for line in response.iter_lines():
                    self.lines.append(line)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._client.close()


def test_ctrl_c_with_a_live_stream_open_stops_fast_and_quietly(
    tmp_path: Path, names: Names
) -> None:
    """SIGINT with a dashboard's live stream open: the stream ends, the hub exits 0 as
    fast as without one, and logs no error and no traceback."""
    hub = HubProcess(
        tmp_path / "hub",
        {"HUB_MQTT__EMBEDDED_LISTEN": "127.0.0.1:0", "HUB_MQTT__CLIENT_ID": names.topic_prefix()},
    )
    hub.start()
    try:
        stream = _Stream(hub.url, hub.admin_key)
        wait_for(lambda: ": connected" in stream.lines, timeout=15, what="the stream to open")
        assert hub.proc is not None
        started = time.monotonic()
        hub.proc.send_signal(signal.SIGINT)
        try:
            code = hub.proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"hub did not stop within {STOP_WITHIN_S} s:\n{hub.log_tail()}")
        took = time.monotonic() - started
    finally:
        hub.kill()
    log = hub.log_tail(1_000_000)
    assert code == 0, log
    assert took < STOP_WITHIN_S
    assert stream.ended.wait(5), "the stream was left open"
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert "[error" not in log
    assert "hub stopped cleanly" in log


def _open_to_others(root: Path) -> list[str]:
    """Every file or folder under ``root`` (and root) that group or others may access."""
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:  # a temporary file, gone since the listing
            continue
        if not path.is_symlink() and mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


def test_data_dir_and_everything_in_it_are_private_to_the_hub(tmp_path: Path, names: Names) -> None:
    """The data dir is 0700 and every file in it 0600 while the hub runs with its embedded
    broker, store writer and journal, and after it stops; a data dir created open (0755)
    is made private."""
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    hub = HubProcess(
        data_dir,
        {
            "HUB_MQTT__EMBEDDED_LISTEN": "127.0.0.1:0",
            "HUB_RULES__MANAGED_DIR": str(tmp_path / "managed"),
        },
    )
    hub.log_path = tmp_path / "hub.log"  # the test's own file, not the hub's
    hub.start()
    try:
        device = names.device()
        publisher = Publisher(hub.health()["checks"]["broker"]["url"])
        now_ms = int(time.time() * 1000)
        publisher.publish_many(
            (
                f"city/d01/flood_gauge/{device}/telemetry",
                {"ts": now_ms - 20_000 + i * 1000, "seq": i, "metrics": {"water_level_m": 1.0}},
            )
            for i in range(20)
        )
        publisher.wait_all()
        publisher.close()

        def stored() -> bool:
            points = hub.get(
                f"/api/v1/devices/{device}/telemetry", metric="water_level_m", start="-1h"
            )
            return len(points["points"]) == 20

        wait_for(stored, timeout=30, what="the readings in the store")
        for part in ("hub.db", "telemetry.db", "journal", "broker"):
            assert (data_dir / part).exists(), part
        assert _open_to_others(data_dir) == []
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    finally:
        assert hub.stop() == 0, hub.log_tail()
    assert _open_to_others(data_dir) == []
    assert "made it private" in hub.log_tail()
