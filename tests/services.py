"""Real Mosquitto, InfluxDB 1.x and NATS (JetStream) processes for tests and benchmarks.

Each runs on a free loopback port in its own temporary folder, so a test can
stop, kill and restart it. Nothing here touches a broker or database that the
machine already runs (1883, 8086, 4222 are never assumed free or used).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


class NatsServer(_Process):
    """A ``nats-server`` (Debian's) with JetStream, alone or as one node of a cluster.

    Its store, log and config live in its folder and its ports stay the same across
    restarts, so a killed node comes back with what it had written.
    """

    name = "nats"

    def __init__(
        self,
        workdir: Path,
        *,
        server_name: str = "n1",
        port: int | None = None,
        cluster_port: int | None = None,
        routes: Sequence[int] = (),
        cluster_name: str = "hubtest",
    ) -> None:
        super().__init__(workdir)
        self.server_name = server_name
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.cluster_name = cluster_name
        self.conf_path = workdir / "nats.conf"
        self.log_path = workdir / f"{server_name}.log"

    @property
    def url(self) -> str:
        """nats:// URL of this server."""
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        store = self.workdir / "jetstream"
        store.mkdir(exist_ok=True)
        conf = (
            f"server_name: {self.server_name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            # Small limits: tests write little, and several servers share one machine.
            f'jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 2GB }}\n'
        )
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            conf += (
                f"cluster {{ name: {self.cluster_name}, listen: 127.0.0.1:{self.cluster_port},"
                f" routes: [{routes}] }}\n"
            )
        self.conf_path.write_text(conf)
        return [_binary("nats-server", "/usr/sbin/nats-server"), "-c", str(self.conf_path)]

    def ready(self) -> bool:
        # A clustered node answers on its port before it has peers; NatsCluster waits
        # for JetStream health on every node once they are all up.
        return port_open(self.port) if self.cluster_port is not None else self.healthy()

    def healthy(self) -> bool:
        """True when the server says JetStream is ready (``/healthz``)."""
        return self.health() == "ok"

    def health(self) -> str:
        """What ``/healthz`` says: ``ok``, or the reason it is not."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=0.5)
        except httpx.HTTPError as exc:
            return f"unreachable: {exc}"
        if response.status_code == 200:
            return "ok"
        return response.text.strip()

    def jsz(self) -> dict[str, Any]:
        """The server's JetStream report (``/jsz``): meta leader, streams, consumers."""
        response = httpx.get(
            f"http://127.0.0.1:{self.monitor_port}/jsz",
            params={"streams": "true", "consumers": "true"},
            timeout=2,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


class NatsCluster:
    """Three (or ``size``) ``nats-server`` nodes routed into one JetStream cluster.

    Each node can be stopped, killed and restarted on its own; :attr:`urls` is what a
    client is given (every node, so it fails over).
    """

    def __init__(self, workdir: Path, size: int = 3) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsServer(
                workdir / f"n{i + 1}",
                server_name=f"n{i + 1}",
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> str:
        """Every node's URL, comma-separated (HUB_NATS__URL)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, then wait until each reports JetStream ready."""
        for node in self.nodes:
            node.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every running node reports JetStream ready (a meta leader elected,
        every stream and consumer current)."""
        said: dict[str, str] = {}

        def all_ok() -> bool:
            said.update({n.server_name: n.health() for n in self.nodes if n.running})
            return all(text == "ok" for text in said.values())

        try:
            wait_for(all_ok, timeout=timeout, interval=0.1, what="the NATS cluster")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; the nodes say {said}") from None

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()


def env_without_hub() -> dict[str, str]:
    """The current environment less any ``HUB_*`` variable (so tests set their own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
