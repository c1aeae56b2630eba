"""`hub run` that cannot reach its broker still stops promptly and cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubproc import HubProcess
from tests.services import free_port, wait_for

pytestmark = pytest.mark.integration

#: A stop must not wait out the TCP connect timeout (5 s) of a pending attempt.
STOP_DEADLINE_S = 2.0


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port whose TCP connects hang: a listener with a full backlog that never accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # completes later, from the backlog
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.5)
    with pytest.raises(TimeoutError):  # the premise: a connect here does not finish
        probe.connect(("127.0.0.1", port))
    probe.close()
    yield port
    for sock in (*fillers, listener):
        sock.close()


def _stop_within_deadline(hub: HubProcess) -> None:
    assert hub.proc is not None
    started = time.monotonic()
    hub.proc.send_signal(signal.SIGTERM)
    try:
        code = hub.proc.wait(STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        hub.kill()
        pytest.fail(f"hub did not exit within {STOP_DEADLINE_S} s of SIGTERM:\n{hub.log_tail()}")
    assert code == 0, hub.log_tail()
    assert time.monotonic() - started < STOP_DEADLINE_S
    assert "never retrieved" not in hub.log_tail(100_000)


def test_sigterm_while_the_broker_refuses_connections(tmp_path: Path) -> None:
    """Retrying a closed port: SIGTERM -> exit 0 within 2 s."""
    hub = HubProcess(tmp_path / "hub", {"HUB_MQTT__URL": f"mqtt://127.0.0.1:{free_port()}"})
    try:
        hub.start(ready=False)
        wait_for(lambda: "broker unreachable" in hub.log_tail(100_000), what="a failed attempt")
        assert hub.health()["checks"]["broker"]["connected"] is False
        _stop_within_deadline(hub)
    finally:
        hub.kill()


def test_sigterm_while_a_connect_hangs(tmp_path: Path, hanging_port: int) -> None:
    """A TCP connect in progress (unresponsive broker): SIGTERM -> exit 0 within 2 s."""
    hub = HubProcess(tmp_path / "hub", {"HUB_MQTT__URL": f"mqtt://127.0.0.1:{hanging_port}"})
    try:
        hub.start(ready=False)
        assert hub.health()["checks"]["broker"]["connected"] is False
        _stop_within_deadline(hub)
    finally:
        hub.kill()
