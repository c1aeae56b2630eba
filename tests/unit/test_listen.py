"""Listening addresses (hub.listen): free ports, the next free one, the API's socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from hub.listen import AddressInUse, ApiPortInUse, api_listener, next_free_port, port_free


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A loopback port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_a_port_someone_listens_on_is_not_free(listening: socket.socket) -> None:
    """port_free is False where another program listens, True once it has gone."""
    port = listening.getsockname()[1]
    assert not port_free("127.0.0.1", port)
    listening.close()
    assert port_free("127.0.0.1", port)


def test_next_free_port_skips_taken_and_avoided_ports() -> None:
    """The next free port after a taken one, past ports already promised elsewhere."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        first.listen()
        base = first.getsockname()[1]
        try:
            second.bind(("127.0.0.1", base + 1))
            second.listen()
        except OSError:
            pytest.skip(f"port {base + 1} is in use by something else here")
        found = next_free_port("127.0.0.1", base, avoid=frozenset({base + 2}))
        assert found > base + 2
        assert port_free("127.0.0.1", found)


def test_api_listener_on_a_taken_port_names_the_settings(listening: socket.socket) -> None:
    """The API's address taken: ApiPortInUse (an AddressInUse, an OSError) naming
    HUB_API__PORT and HUB_API__HOST."""
    port = listening.getsockname()[1]
    with pytest.raises(ApiPortInUse) as caught:
        api_listener("127.0.0.1", port)
    assert isinstance(caught.value, AddressInUse)
    assert caught.value.listen == f"127.0.0.1:{port}"
    message = str(caught.value)
    assert f"127.0.0.1:{port} is already in use" in message
    assert "HUB_API__PORT" in message
    assert "HUB_API__HOST" in message


def test_api_listener_binds_without_listening() -> None:
    """The API's socket is bound at once (so the port is ours) and listens only when the
    web server is ready: a client before that is refused, not left hanging."""
    sock = api_listener("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))
    finally:
        sock.close()
