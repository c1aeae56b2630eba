"""Who is calling: bearer-key authentication, roles, scopes and failed-login rate limiting.

Failed authentications are counted twice, in sliding windows: per key id (the public
``<id>`` of a well-formed key) and per client address. A key id that fails
``MAX_FAILURES`` times is locked for the window wherever it is presented from: that
is the defence against guessing a key's secret. An address that fails as often gets
429 instead of 401 for its further failures, but a valid key from it still works:
one guesser behind a shared address (a control room's NAT, a reverse proxy) cannot
lock out everyone else behind it. Behind reverse proxies named in
``HUB_API__TRUSTED_PROXIES`` the client address is read from ``X-Forwarded-For``.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from fastapi import HTTPException, status

from hub.api.keys import ROLE_RANK, ApiKey
from hub.ports import Scope

#: Failed authentications per key id (or client address) and window before it gets 429.
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0
#: Addresses (or key ids) one limiter remembers; the least recently failing are forgotten.
MAX_TRACKED_CLIENTS = 10_000
#: ``last_used_ms`` of a key is written at most this often (a write per request is waste).
TOUCH_INTERVAL_MS = 60_000

#: Metric classifications (DESIGN "Open data") and the least role that may read each.
CLASSIFICATION_ROLE: dict[str, str] = {
    "public": "viewer",
    "internal": "viewer",
    "restricted": "operator",
}


def reader_role(classification: str) -> str:
    """The least role that reads metrics of ``classification`` (an unknown class: operator)."""
    return CLASSIFICATION_ROLE.get(classification, "operator")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the key it presented."""

    key: ApiKey

    @property
    def id(self) -> str:
        """The key's public id."""
        return self.key.id

    @property
    def name(self) -> str:
        """The key's name (recorded as the actor of acks, comments, rule changes)."""
        return self.key.name

    @property
    def role(self) -> str:
        """The key's role."""
        return self.key.role

    @property
    def scope(self) -> Scope:
        """Districts and asset types the key may see."""
        return self.key.scope

    @property
    def scoped(self) -> bool:
        """True when the key is limited to some districts or asset types."""
        return self.scope.districts is not None or self.scope.asset_types is not None

    def has_role(self, role: str) -> bool:
        """True when the key's role is ``role`` or above."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def allows(self, district: str, asset_type: str) -> bool:
        """True when ``district``/``asset_type`` is inside the key's scope."""
        return self.scope.allows(district, asset_type)

    def require_scope(self, district: str, asset_type: str, what: str) -> None:
        """Raise 403 when ``what`` (in district/asset type) is outside the key's scope."""
        if not self.allows(district, asset_type):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{what} is outside this key's scope")

    def may_read(self, classification: str) -> bool:
        """True when the key's role may read metrics of ``classification``."""
        return self.has_role(reader_role(classification))


class FailedAuthLimiter:
    """Counts failed authentications per client address in a sliding window."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def retry_after(self, client: str, now: float) -> int | None:
        """Seconds ``client`` must wait before trying again, or None when it may try now."""
        times = self._recent(client, now)
        if len(times) < self._max:
            return None
        return max(1, math.ceil(times[0] + self._window - now))

    def failed(self, client: str, now: float) -> None:
        """Count one failed authentication by ``client``."""
        times = self._failures.pop(client, None) or deque(maxlen=self._max)
        times.append(now)
        self._failures[client] = times  # most recently failing last
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Lockout:
    """Failed authentications per key id and per client address (module docstring)."""

    by_key: FailedAuthLimiter = field(default_factory=FailedAuthLimiter)
    by_address: FailedAuthLimiter = field(default_factory=FailedAuthLimiter)


Network = IPv4Network | IPv6Network


def client_address(scope: Mapping[str, Any], trusted_proxies: Sequence[Network]) -> str:
    """The caller's address: the connection's peer, or behind trusted proxies the client
    they name.

    ``X-Forwarded-For`` is read only when the peer is a trusted proxy, from the right
    (each proxy appends the address it saw): the first entry that is not itself a
    trusted proxy is the client. A malformed entry ends the walk at the last trusted
    hop, so whatever a client writes into the header cannot choose its own address.
    """
    peer = scope.get("client")
    hop = str(peer[0]) if peer else "unknown"
    if not trusted_proxies or not _is_trusted(hop, trusted_proxies):
        return hop
    forwarded = b",".join(v for k, v in scope.get("headers", ()) if k == b"x-forwarded-for")
    for raw in reversed(forwarded.decode("latin-1").split(",")):
        entry = raw.strip()
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            return hop
        if not _is_trusted(entry, trusted_proxies):
            return entry
        hop = entry
    return hop


def _is_trusted(address: str, trusted_proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted_proxies)
