"""The journal's record codec: one message (Reading, StatusUpdate, Rejection) <-> bytes.

Format of one record (version 1)::

    byte 0     type tag: b"R" Reading, b"r" Reading with a value beyond what
               every JSON library reads exactly (integers beyond 64 bits,
               NaN, infinities), b"S" StatusUpdate, b"X" Rejection
    byte 1     format version of that type (1)
    bytes 2..  compact JSON array of the message's fields, in a fixed order

Why JSON: it keeps ``True``/``1``/``1.0`` apart (bools stay bools, ints stay
ints, floats round-trip exactly through their shortest repr), integers of any
size survive, and a journal stays readable by eye and by future versions.
Bytes (a rejected payload) travel as base64.

Speed: readings run through here once on the way in and once per journal
consumer. When ``orjson`` is installed it encodes and decodes readings (several
times faster than the standard library, same JSON); the standard library's C
codec is the fallback, and takes over for what orjson cannot represent exactly
(integers beyond 64 bits, non-finite floats). Both read each other's records.
See bench/journal.py for the figures.

Compatibility: when a message gains a field (hub.messages adds fields with
defaults, never renames), it is appended at the end of its type's array and the
decoder fills the default for shorter arrays from older records, so old
journals stay readable. A change that cannot be expressed that way bumps the
version byte and keeps a decoder for the old one.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from hub.logging import get_logger
from hub.messages import Reading, Rejection, StatusUpdate

log = get_logger(__name__)

__all__ = ["RecordError", "decode", "decode_all", "encode"]

Message = Reading | StatusUpdate | Rejection

_TAG_READING = ord("R")
_TAG_READING_WIDE = ord("r")
_TAG_STATUS = ord("S")
_TAG_REJECTION = ord("X")
_VERSION = 1

_HEAD_READING = bytes((_TAG_READING, _VERSION))
_HEAD_READING_WIDE = bytes((_TAG_READING_WIDE, _VERSION))
_HEAD_STATUS = bytes((_TAG_STATUS, _VERSION))
_HEAD_REJECTION = bytes((_TAG_REJECTION, _VERSION))

# One encoder, built once: compact separators and no circular check (messages are
# flat data) keep it on the C fast path.
_dumps: Callable[[Any], str] = json.JSONEncoder(
    separators=(",", ":"), check_circular=False, ensure_ascii=False
).encode
_loads = json.loads
_fast_dumps: Callable[[Any], bytes] | None = None
_fast_loads: Callable[[bytes], Any] | None = None
try:  # optional accelerator: same format, several times faster
    import orjson  # type: ignore[import-not-found,unused-ignore]

    _fast_dumps, _fast_loads = orjson.dumps, orjson.loads
except ImportError:  # pragma: no cover - depends on the installation
    pass
_isfinite = math.isfinite


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _orjson_exact(values: Iterable[object]) -> bool:
    """True when orjson writes every value exactly (finite floats, 64-bit ints, bools)."""
    for value in values:
        kind = type(value)
        if kind is float:
            if not _isfinite(value):  # type: ignore[arg-type]
                return False  # orjson would write null
        elif kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
                return False  # orjson would refuse or round it
        elif kind is not bool:
            return False
    return True


class RecordError(ValueError):
    """A journal record that cannot be decoded (unknown tag or version, or corrupt)."""


def encode(msg: Reading | StatusUpdate | Rejection) -> bytes:
    """Serialise one message for the journal (exact, versioned)."""
    if type(msg) is Reading:
        metrics = msg.metrics if type(msg.metrics) is dict else dict(msg.metrics)
        body = [
            msg.district,
            msg.asset_type,
            msg.device_id,
            msg.ts_ms,
            metrics,
            msg.seq,
            msg.received_ms,
            msg.quality,
            msg.out_of_range,
        ]
        if not (
            _orjson_exact(metrics.values())
            and _orjson_exact((msg.ts_ms, msg.received_ms, 0 if msg.seq is None else msg.seq))
        ):
            # Tagged so that decoding uses the standard library, which reads it exactly.
            return _HEAD_READING_WIDE + _dumps(body).encode()
        if _fast_dumps is not None:
            return _HEAD_READING + _fast_dumps(body)
        return _HEAD_READING + _dumps(body).encode()
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
        body = data[2:]
        f = _fast_loads(body) if tag == _TAG_READING and _fast_loads is not None else _loads(body)
        if tag in (_TAG_READING, _TAG_READING_WIDE):
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


#: Bytes of an undecodable record kept in its dead letter (as for any payload).
BAD_RECORD_KEEP = 1024


def decode_all(blobs: Iterable[bytes], now_ms: int = 0) -> list[Message]:
    """Decode a journal batch. A record that cannot be decoded does not stop the
    consumer and is not lost without trace: it is logged, and in its place comes a
    Rejection (reason ``bad_record``, its first bytes as payload, ``now_ms`` as its
    time) that the live stage keeps as a dead letter and counts; other consumers,
    which want readings only, pass over it."""
    out: list[Message] = []
    for blob in blobs:
        try:
            out.append(decode(blob))
        except Exception as exc:
            log.exception("undecodable journal record", error=repr(exc), size=len(blob))
            out.append(
                Rejection(
                    topic="journal",
                    reason="bad_record",
                    detail=f"journal record of {len(blob)} bytes cannot be decoded: {exc}",
                    payload=bytes(blob[:BAD_RECORD_KEEP]),
                    received_ms=now_ms,
                )
            )
    return out
