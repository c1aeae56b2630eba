"""EmbeddedBroker: Mosquitto as a child of the hub, or amqtt in-process as the fallback.

Why Mosquitto first: measured on the 2-core machine the hub targets (see
docs/deploy.md), the in-process amqtt 0.12 broker tops out at a few thousand QoS 1
messages/s, shares the hub's one core and event loop, loses sessions and retained
messages on restart (its persistence plugin needs SQLAlchemy), and drops
connections under load; Mosquitto as a separate process is an order of magnitude
faster, persists sessions and retained messages under ``HUB_DATA_DIR/broker``, and
is what production runs anyway.

The child dies with the hub, even on SIGKILL: ``PR_SET_PDEATHSIG`` is set in the
child before it executes Mosquitto. It runs in its own process group so a Ctrl-C
in a terminal reaches only the hub, which then stops it in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Literal

from hub.ingest.topics import subscriptions
from hub.listen import AddressInUse, bind_socket, is_any, is_loopback, join, system_free_port
from hub.logging import get_logger
from hub.settings import MqttSettings

log = get_logger(__name__)

Backend = Literal["auto", "mosquitto", "amqtt"]

#: Sized like deploy/mosquitto: the hub's receive-maximum is 2000, and the queue
#: holds ~1 min of a 15k msgs/s city (or hours of a demo fleet) while the hub is down.
MAX_INFLIGHT_MESSAGES = 2000
MAX_QUEUED_MESSAGES = 1_000_000
MAX_QUEUED_BYTES = 1024**3
#: How long a Mosquitto child may take to listen, and to stop on SIGTERM.
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


class BrokerStartError(OSError):
    """The embedded broker could not start; the message says why and what to change."""


class PortInUse(AddressInUse, BrokerStartError):
    """The embedded broker's address is taken by another program."""

    def __init__(self, listen: str) -> None:
        super().__init__(
            listen,
            f"cannot start the embedded MQTT broker: {listen} is already in use. "
            "Set HUB_MQTT__EMBEDDED_LISTEN to a free HOST:PORT, or set HUB_MQTT__URL "
            "to use the broker that is already running there (e.g. mqtt://"
            f"{listen}).",
        )


class EmbeddedBroker:
    """``async with EmbeddedBroker(settings.mqtt, data_dir) as broker: broker.url``."""

    def __init__(
        self,
        settings: MqttSettings,
        data_dir: Path,
        *,
        backend: Backend | None = None,
        mosquitto_binary: str | None = None,
    ) -> None:
        self._settings = settings
        # Absolute: Mosquitto runs with this folder as its working directory and
        # reads every path of its config from there.
        self._dir = Path(os.path.abspath(data_dir / "broker"))
        self._requested: Backend = backend or settings.embedded_broker
        self._binary = mosquitto_binary or _find_mosquitto()
        self._proc: subprocess.Popen[bytes] | None = None
        self._amqtt: Any = None
        self.backend: Literal["mosquitto", "amqtt"] | None = None
        self.url = ""
        #: The MQTT protocol clients must speak to this broker: amqtt 0.12 has no MQTT 5,
        #: so the hub's ingest session must use 3.1.1 with it (``MqttSettings.protocol``).
        self.mqtt_protocol: Literal["5", "3.1.1"] = "5"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> EmbeddedBroker:
        host, port = self._settings.embedded_host_port()
        if port == 0:
            port = system_free_port(host)
        listen = join(host, port)
        _check_free(host, port, listen)
        self._dir.mkdir(parents=True, exist_ok=True)
        use_mosquitto = self._requested == "mosquitto" or (
            self._requested == "auto" and self._binary is not None
        )
        if use_mosquitto:
            if self._binary is None:
                raise BrokerStartError(
                    "the embedded broker was asked to be Mosquitto, which is not installed"
                )
            hub_port = await self._start_mosquitto(host, port, listen)
            self.backend = "mosquitto"
        else:
            if not is_loopback(host):
                raise BrokerStartError(
                    f"HUB_MQTT__EMBEDDED_LISTEN={listen} is not a loopback address; the "
                    "in-process broker has no authentication, so it only listens on "
                    "loopback. Install Mosquitto (then `hub devices credentials --out "
                    f"{self._dir}` to secure it) or set HUB_MQTT__URL."
                )
            await self._start_amqtt(host, port, listen)
            hub_port = port
            self.backend = "amqtt"
            self.mqtt_protocol = "3.1.1"
        connect_host = "127.0.0.1" if is_any(host) or not is_loopback(host) else host
        self.url = f"mqtt://{join(connect_host, hub_port)}"
        log.info("embedded broker started", backend=self.backend, listen=listen, url=self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            await asyncio.to_thread(self._stop_child)
        if self._amqtt is not None:
            with contextlib.suppress(Exception):
                await self._amqtt.shutdown()
            self._amqtt = None
        log.info("embedded broker stopped", backend=self.backend)

    @property
    def pid(self) -> int | None:
        """The Mosquitto child's process id (None for the in-process broker)."""
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------------ mosquitto

    async def _start_mosquitto(self, host: str, port: int, listen: str) -> int:
        """Write the config, start the child, wait until it listens; return the hub's port."""
        assert self._binary is not None
        conf, hub_port = self._mosquitto_conf(host, port, listen)
        conf_path = self._dir / "mosquitto.conf"
        conf_path.write_text(conf, encoding="utf-8")
        log_path = self._dir / "mosquitto.log"
        self._proc = self._spawn(conf_path, log_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        ports = {port, hub_port}
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                text = log_path.read_text(errors="replace")
                if "Address already in use" in text or "address already in use" in text:
                    raise PortInUse(listen)
                raise BrokerStartError(
                    f"the embedded Mosquitto exited (code {code}) while starting: "
                    f"{text.strip()[-800:]} (config {conf_path})"
                )
            if all(_child_listens(self._proc.pid, p) for p in ports):
                return hub_port
            if loop.time() > deadline:
                self._stop_child()
                raise BrokerStartError(
                    f"the embedded Mosquitto did not listen on {listen} within "
                    f"{START_TIMEOUT_S:.0f}s; see {log_path}"
                )
            await asyncio.sleep(0.02)

    def _spawn(self, conf_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
        """Fork Mosquitto from this (the event loop's) thread.

        Not from a worker thread: PR_SET_PDEATHSIG fires when the *thread* that
        forked the child exits, and worker threads come and go.
        """
        assert self._binary is not None
        with log_path.open("wb") as out:
            return subprocess.Popen(  # noqa: S603 (a fixed binary and our own config)
                [self._binary, "-c", str(conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (prctl must run in the child)
                start_new_session=True,
            )

    def _mosquitto_conf(self, host: str, port: int, listen: str) -> tuple[str, int]:
        """Mosquitto's config; anonymous access only on loopback."""
        d = self._dir
        common = (
            "# Written by the hub on every start; edit HUB_MQTT__* settings instead.\n"
            "per_listener_settings true\n"
            "persistence true\n"
            f"persistence_location {d}/\n"
            "persistence_file mosquitto.db\n"
            # Saved every 10 s and on a clean stop: a crash of the broker loses at
            # most what devices sent in the last 10 s that the hub had not yet taken.
            "autosave_interval 10\n"
            "persistent_client_expiration 14d\n"
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}\n"
            f"max_queued_messages {MAX_QUEUED_MESSAGES}\n"
            # A bound in bytes as well as in messages, as in production.conf: a
            # flood of large messages while the hub is down must not fill memory.
            f"max_queued_bytes {MAX_QUEUED_BYTES}\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\n"
            "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
        )
        if os.geteuid() == 0:
            # Started as root, Mosquitto switches to the "mosquitto" user, which
            # cannot write our data dir; and a credential change clears
            # PR_SET_PDEATHSIG, so the child would outlive a killed hub. Stay root.
            common += "user root\n"
        bind = "" if is_any(host) else f" {host}"
        if is_loopback(host):
            return f"{common}listener {port}{bind}\nallow_anonymous true\n", port
        passwd, acl = d / "passwd", d / "acl"
        if not passwd.exists() or not acl.exists():
            raise BrokerStartError(
                f"HUB_MQTT__EMBEDDED_LISTEN={listen} is reachable from the network, so "
                f"devices must authenticate: run `hub devices credentials --out {d}` to "
                f"write {passwd} and {acl}, or listen on 127.0.0.1"
            )
        # Devices authenticate on the public listener; the hub itself connects to a
        # private loopback listener, so it needs no password of its own.
        hub_port = system_free_port("127.0.0.1")
        return (
            f"{common}listener {port}{bind}\nallow_anonymous false\n"
            f"password_file {passwd}\nacl_file {acl}\n"
            f"listener {hub_port} 127.0.0.1\nallow_anonymous true\n",
            hub_port,
        )

    def _stop_child(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Mosquitto saves its persistence file
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("embedded Mosquitto did not stop; killing it", pid=proc.pid)
                proc.kill()
                proc.wait()

    # ------------------------------------------------------------------ amqtt

    async def _start_amqtt(self, host: str, port: int, listen: str) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:  # a packaging that left out a declared dependency
            raise BrokerStartError(
                "no embedded MQTT broker: Mosquitto is not installed and the in-process "
                f"broker cannot be loaded ({exc}). Install Mosquitto (Debian: apt install "
                "mosquitto), reinstall the hub with its dependencies, or set HUB_MQTT__URL."
            ) from exc

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "timeout_disconnect_delay": 0,
            "plugins": {
                "hub.broker.amqtt_auth.LoopbackAuthPlugin": {},
                "hub.broker.amqtt_session.HubSessionPlugin": {
                    "client_id": self._settings.client_id,
                    "topics": subscriptions(self._settings.topic_prefix),
                },
            },
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:
            if _is_addr_in_use(exc):
                raise PortInUse(listen) from exc
            raise BrokerStartError(f"the in-process MQTT broker failed to start: {exc}") from exc
        self._amqtt = broker


# ---------------------------------------------------------------------- helpers


def _find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the hub dies (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the hub died before prctl took effect
        os._exit(1)


def _check_free(host: str, port: int, listen: str) -> None:
    """Raise PortInUse when ``host:port`` cannot be bound right now."""
    try:
        bind_socket(host, port).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(listen) from exc
        raise BrokerStartError(
            f"cannot listen on HUB_MQTT__EMBEDDED_LISTEN={listen}: {exc.strerror}"
        ) from exc


def _child_listens(pid: int, port: int) -> bool:
    """True when process ``pid`` owns a listening TCP socket on ``port``.

    Not "something accepts connections there": in a race, another program may
    hold the port while the child fails to bind it.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd_dir / fd) in inodes for fd in os.listdir(fd_dir))
    except OSError:
        return False


def _is_addr_in_use(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EADDRINUSE:
            return True
        seen = seen.__cause__ or seen.__context__
    return "address already in use" in str(exc).lower()
