"""Listening addresses: whether a port is free, the next free one, a bound listener.

Shared by the embedded broker, the API and ``hub demo``. ``hub run`` treats a taken
address as the operator's to fix (a clear error naming the settings); ``hub demo``,
whose own simulator is the only client, moves on to the next free port instead
(CONTRACT §4).
"""

from __future__ import annotations

import errno
import ipaddress
import socket

#: How far past a taken port ``next_free_port`` looks before asking the system.
NEXT_PORT_SPAN = 100


class AddressInUse(OSError):
    """``listen`` is taken by another program; the message says which settings to change."""

    def __init__(self, listen: str, message: str) -> None:
        super().__init__(errno.EADDRINUSE, message)
        self.listen = listen

    def __str__(self) -> str:
        return str(self.strerror)


def join(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_any(host: str) -> bool:
    """True for the wildcard addresses (every interface)."""
    return host in {"0.0.0.0", "::", ""}  # noqa: S104 (recognising it, not binding)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound for listening right now."""
    try:
        bind_socket(host, port).close()
    except OSError:
        return False
    return True


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, not yet listening (``OSError`` if taken).

    ``SO_REUSEADDR`` as servers set it, so a port left in TIME_WAIT by a previous
    run is free, and a port another program listens on is not. The server that is
    handed the socket listens when it is ready to answer.
    """
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def system_free_port(host: str) -> int:
    """A port the system says is free on ``host`` now (for the wildcard: on loopback)."""
    bind_host = host
    if is_any(host):
        bind_host = "::1" if _family(host) == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((bind_host, 0))
        return int(sock.getsockname()[1])


def next_free_port(host: str, port: int, *, avoid: frozenset[int] = frozenset()) -> int:
    """The first port after ``port`` that is free on ``host`` (and not in ``avoid``).

    Looks at the next :data:`NEXT_PORT_SPAN` ports, so a newcomer gets a port near
    the one documented (1884 for 1883); then takes one the system picks.
    """
    for candidate in range(port + 1, min(port + NEXT_PORT_SPAN, 65535) + 1):
        if candidate not in avoid and port_free(host, candidate):
            return candidate
    while True:
        candidate = system_free_port(host)
        if candidate not in avoid:
            return candidate


class ApiPortInUse(AddressInUse):
    """The API's address is taken by another program."""

    def __init__(self, listen: str) -> None:
        super().__init__(
            listen,
            f"cannot start the API: {listen} is already in use. Set HUB_API__PORT to a "
            "free port (0 picks one) or HUB_API__HOST to another address.",
        )


def api_listener(host: str, port: int) -> socket.socket:
    """The API's socket on ``host:port`` (HUB_API__HOST, HUB_API__PORT), bound.

    Bound by the hub itself, before anything else starts, so that a taken port is a
    clear error at once rather than a failure inside the web server.
    """
    listen = join(host, port)
    try:
        return bind_socket(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ApiPortInUse(listen) from exc
        raise OSError(
            exc.errno, f"cannot start the API on {listen} (HUB_API__HOST, HUB_API__PORT): {exc}"
        ) from exc
