"""The journal's record codec: one message (Reading, StatusUpdate, Rejection) <-> bytes.

Format of one record (version 1)::

    byte 0     type tag: b"R" Reading, b"S" StatusUpdate, b"X" Rejection
    byte 1     format version of that type (1)
    bytes 2..  compact JSON array of the message's fields, in a fixed order

Why JSON: the standard library's C encoder and decoder are fast enough here
(a few µs per reading, see ``tests/unit/journal/test_records.py`` and
bench/journal.py), JSON keeps ``True``/``1``/``1.0`` apart (bools stay bools,
ints stay ints, floats round-trip exactly through ``repr``), integers of any
size survive, and a journal stays readable by eye and by future versions.
Bytes (a rejected payload) travel as base64.

Compatibility: when a message gains a field (hub.messages adds fields with
defaults, never renames), it is appended at the end of its type's array and the
decoder fills the default for shorter arrays from older records, so old
journals stay readable. A change that cannot be expressed that way bumps the
version byte and keeps a decoder for the old one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from hub.messages import Reading, Rejection, StatusUpdate

__all__ = ["RecordError", "decode", "encode"]

Message = Reading | StatusUpdate | Rejection

_TAG_READING = ord("R")
_TAG_STATUS = ord("S")
_TAG_REJECTION = ord("X")
_VERSION = 1

_HEAD_READING = bytes((_TAG_READING, _VERSION))
_HEAD_STATUS = bytes((_TAG_STATUS, _VERSION))
_HEAD_REJECTION = bytes((_TAG_REJECTION, _VERSION))

# One encoder, built once: compact separators and no circular check (messages are
# flat data) keep it on the C fast path.
_dumps: Callable[[Any], str] = json.JSONEncoder(
    separators=(",", ":"), check_circular=False, ensure_ascii=False
).encode
_loads = json.loads


class RecordError(ValueError):
    """A journal record that cannot be decoded (unknown tag or version, or corrupt)."""


def encode(msg: Reading | StatusUpdate | Rejection) -> bytes:
    """Serialise one message for the journal (exact, versioned)."""
    if type(msg) is Reading:
        return (
            _HEAD_READING
            + _dumps(
                [
                    msg.district,
                    msg.asset_type,
                    msg.device_id,
                    msg.ts_ms,
                    msg.metrics if type(msg.metrics) is dict else dict(msg.metrics),
                    msg.seq,
                    msg.received_ms,
                    msg.quality,
                    msg.out_of_range,
                ]
            ).encode()
        )
    if type(msg) is StatusUpdate:
        return (
            _HEAD_STATUS
            + _dumps(
                [
                    msg.district,
                    msg.asset_type,
                    msg.device_id,
                    msg.state,
                    msg.ts_ms,
                    msg.received_ms,
                    dict(msg.extra),
                ]
            ).encode()
        )
    if type(msg) is Rejection:
        return (
            _HEAD_REJECTION
            + _dumps(
                [
                    msg.topic,
                    msg.reason,
                    msg.detail,
                    base64.b64encode(msg.payload).decode("ascii"),
                    msg.received_ms,
                    msg.device_id,
                    msg.district,
                ]
            ).encode()
        )
    raise TypeError(f"cannot journal a {type(msg).__name__}")


def decode(data: bytes) -> Reading | StatusUpdate | Rejection:
    """Rebuild the message :func:`encode` wrote; raise RecordError if it cannot."""
    if len(data) < 3:
        raise RecordError(f"record too short ({len(data)} bytes)")
    tag = data[0]
    version = data[1]
    if version != _VERSION:
        raise RecordError(f"unknown record version {version} for tag {chr(tag)!r}")
    try:
        f = _loads(data[2:])
        if tag == _TAG_READING:
            # Positional on purpose: this runs per reading, per consumer.
            return Reading(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], tuple(f[8]))
        if tag == _TAG_STATUS:
            return StatusUpdate(
                district=f[0],
                asset_type=f[1],
                device_id=f[2],
                state=f[3],
                ts_ms=f[4],
                received_ms=f[5],
                extra=f[6],
            )
        if tag == _TAG_REJECTION:
            return Rejection(
                topic=f[0],
                reason=f[1],
                detail=f[2],
                payload=base64.b64decode(f[3]),
                received_ms=f[4],
                device_id=f[5],
                district=f[6],
            )
    except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
        raise RecordError(f"corrupt {chr(tag)!r} record: {exc}") from exc
    raise RecordError(f"unknown record tag {tag!r}")
