"""Real Mosquitto and InfluxDB 1.x processes for tests and benchmarks.

Each runs on a free loopback port in its own temporary folder, so a test can
stop, kill and restart it. Nothing here touches a broker or database that the
machine already runs (1883, 8086 are never assumed free or used).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> object:
    """Poll ``condition`` until it returns something truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # the condition may fail until the thing is up
            last_exc = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition!r}: {last_exc}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _binary(name: str, *candidates: str) -> str:
    for candidate in (shutil.which(name), *candidates):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(f"{name} is not installed; run .ci/run (it installs Debian's package)")


class _Process:
    """A child server process with start / stop / kill / restart."""

    name = "service"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            return self.ready()

        wait_for(up, timeout=timeout, what=f"{self.name} to start")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (SIGTERM), then kill if it does not go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop then start on the same port and data folder."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        """The end of the server's log, for failure messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


class Mosquitto(_Process):
    """A Mosquitto broker on a free loopback port with persistence in its folder."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.conf_path = workdir / "mosquitto.conf"

    @property
    def url(self) -> str:
        """mqtt:// URL of this broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        (self.workdir / "data").mkdir(exist_ok=True)
        self.conf_path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Run as root (CI, here), mosquitto would switch to the `mosquitto` user and
            # then fail to write its persistence file into this root-owned folder.
            "user root\n"
            "persistence true\n"
            f"persistence_location {self.workdir / 'data'}/\n"
            "set_tcp_nodelay true\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
            "message_size_limit 0\n"
            "log_type error\nlog_type warning\n"
            f"{self.extra_conf}\n"
        )
        return [_binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(self.conf_path)]

    def ready(self) -> bool:
        return port_open(self.port)


class InfluxDB1(_Process):
    """An InfluxDB 1.x server (Debian's ``influxdb``) on free loopback ports."""

    name = "influxdb"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.conf_path = workdir / "influxdb.conf"

    @property
    def url(self) -> str:
        """http:// URL of this server."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        d = self.workdir
        self.conf_path.write_text(
            "reporting-enabled = false\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            '  index-version = "inmem"\n'
            "[monitor]\n  store-enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "  suppress-write-log = true\n  pprof-enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )
        return [_binary("influxd", "/usr/bin/influxd"), "-config", str(self.conf_path)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        """Run InfluxQL and return the decoded JSON answer."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        response = httpx.post(f"{self.url}/query", params=params, timeout=30)
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result

    def create_database(self, db: str) -> None:
        """CREATE DATABASE (idempotent)."""
        self.query(f'CREATE DATABASE "{db}"')

    def count(self, db: str, measurement: str, field: str = "seq", where: str = "") -> int:
        """COUNT(field) of a measurement; 0 when there is none."""
        clause = f" WHERE {where}" if where else ""
        data = self.query(f'SELECT COUNT("{field}") FROM "{measurement}"{clause}', db)
        try:
            series = data["results"][0]["series"]  # type: ignore[index]
            return int(series[0]["values"][0][1])
        except (KeyError, IndexError, TypeError):
            return 0


def env_without_hub() -> dict[str, str]:
    """The current environment less any ``HUB_*`` variable (so tests set their own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
