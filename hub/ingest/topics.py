"""Topic parsing (CONTRACT §1): pure, cached, with precise messages.

``{prefix}/{district}/{asset_type}/{device_id}/telemetry`` and ``…/status``.
A fleet has a bounded set of topics, so results (good and bad) are cached: the
hot path pays a dict lookup per message, not a split and three regex matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from hub.messages import ASSET_TYPE_RE, DEVICE_ID_RE, DISTRICT_RE

TopicKind = Literal["telemetry", "status"]

#: Reserved by the hub for its own alert topics (``{prefix}/alerts/…``).
RESERVED_DISTRICTS = frozenset({"alerts"})

# Sized for a large city's fleet (two topics per device) with room to spare;
# an attacker spraying random topics only evicts entries, memory stays bounded.
_CACHE_SIZE = 131_072
_MAX_TOPIC_CHARS = 1024


class TopicError(ValueError):
    """A topic that breaks CONTRACT §1; ``reason`` is the stable rejection code."""

    def __init__(self, detail: str, *, reason: str = "bad_topic") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What a valid device topic says: message kind and device identity."""

    kind: TopicKind
    district: str
    asset_type: str
    device_id: str


def parse_topic(topic: str, prefix: str) -> TopicInfo:
    """Parse a device topic under ``prefix``; raise :class:`TopicError` when it breaks §1."""
    result = _parse(topic, prefix)
    if isinstance(result, str):
        raise TopicError(result)
    return result


def subscriptions(prefix: str) -> list[str]:
    """The MQTT subscriptions that cover every device topic under ``prefix``."""
    return [f"{prefix}/+/+/+/telemetry", f"{prefix}/+/+/+/status"]


@lru_cache(maxsize=_CACHE_SIZE)
def _parse(topic: str, prefix: str) -> TopicInfo | str:
    """TopicInfo, or the reason it is not one (cached either way)."""
    if len(topic) > _MAX_TOPIC_CHARS:
        return f"topic longer than {_MAX_TOPIC_CHARS} characters"
    head = prefix + "/"
    if not topic.startswith(head):
        return f"topic does not start with the prefix {prefix!r}"
    parts = topic[len(head) :].split("/")
    if len(parts) != 4:
        return (
            f"expected {prefix}/{{district}}/{{asset_type}}/{{device_id}}/telemetry|status, "
            f"got {len(parts)} levels after the prefix"
        )
    district, asset_type, device_id, kind = parts
    if kind not in ("telemetry", "status"):
        return f"last level must be 'telemetry' or 'status', not {kind[:64]!r}"
    if district in RESERVED_DISTRICTS:
        return f"{district!r} is reserved and is not a district"
    if DISTRICT_RE.fullmatch(district) is None:
        return f"district {district[:80]!r} does not match [a-z0-9][a-z0-9_-]{{0,63}}"
    if ASSET_TYPE_RE.fullmatch(asset_type) is None:
        return f"asset_type {asset_type[:80]!r} does not match [a-z0-9][a-z0-9_-]{{0,63}}"
    if DEVICE_ID_RE.fullmatch(device_id) is None:
        return f"device_id {device_id[:80]!r} does not match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}"
    topic_kind: TopicKind = "telemetry" if kind == "telemetry" else "status"
    return TopicInfo(topic_kind, district, asset_type, device_id)
