"""Payload decoding (CONTRACT §2): RawMessage -> readings, statuses and rejections.

Pure and total: :meth:`Decoder.decode` never raises, whatever the topic and
bytes. Every refusal is a :class:`~hub.messages.Rejection` with a short stable
reason code (the dead-letter store counts and keeps them):

``bad_topic``, ``oversize``, ``invalid_utf8``, ``invalid_json``, ``bad_payload``,
``bad_ts``, ``ts_future``, ``ts_too_old``, ``bad_seq``, ``no_metrics``,
``bad_metric_name``, ``bad_metric_value``, ``batch_too_large``, ``bad_senml``,
``bad_status``.

It runs for every message (15,000+/s on one core), so the common case, a
single reading whose topic was seen before, is kept to one cached topic
lookup, one C JSON parse and a type check per metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from hub.ingest import senml
from hub.ingest.topics import TopicError, TopicInfo, parse_topic
from hub.logging import get_logger
from hub.messages import METRIC_RE, MetricValue, RawMessage, Reading, Rejection, StatusUpdate
from hub.settings import IngestSettings

log = get_logger(__name__)

REASONS = (
    "bad_topic",
    "oversize",
    "invalid_utf8",
    "invalid_json",
    "bad_payload",
    "bad_ts",
    "ts_future",
    "ts_too_old",
    "bad_seq",
    "no_metrics",
    "bad_metric_name",
    "bad_metric_value",
    "batch_too_large",
    "bad_senml",
    "bad_status",
)

# Stored as InfluxDB integers (int64): a larger integer cannot be kept exactly.
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
# Epoch ms below this (year 2001) but at/after 1e9 look like seconds sent by mistake.
_SECONDS_HINT = (10**9, 10**12)
_MAX_TS_TEXT = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# Status messages may carry a few descriptive extras (firmware, reason...): kept, bounded.
_MAX_STATUS_EXTRA = 16
_MAX_EXTRA_KEY = 64
_MAX_EXTRA_TEXT = 256
# Known-good metric names, so the regex runs once per name, not once per value.
_METRIC_CACHE_SIZE = 65_536
_MISSING: Any = object()


class _Refused(Exception):
    """Internal: one reading (or message) is refused for ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One decoder object, built once: json.loads(..., parse_constant=...) would build a
# new one for every call. NaN, Infinity and -Infinity are refused by the parser.
_JSON = json.JSONDecoder(parse_constant=_no_constants)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one MQTT message turned into."""

    readings: tuple[Reading, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    rejections: tuple[Rejection, ...] = ()


class Decoder:
    """Turns raw MQTT messages into validated readings and statuses (CONTRACT §1-2)."""

    def __init__(self, settings: IngestSettings, prefix: str) -> None:
        self._prefix = prefix
        self._max_bytes = settings.max_payload_bytes
        self._max_batch = settings.max_batch_readings
        self._future_ms = settings.future_tolerance_s * 1000
        self._backfill_ms = settings.backfill_window_s * 1000
        self._keep_bytes = settings.dead_letter_payload_bytes
        self._good_metrics: set[str] = set()

    def decode(self, raw: RawMessage) -> Decoded:
        """Decode one message; never raises (a bug becomes a ``bad_payload`` rejection)."""
        try:
            return self._decode(raw)
        except Exception:  # the ingest loop must never die of input
            log.exception("decoder failed on a message", topic=raw.topic[:200])
            return Decoded(
                rejections=(
                    self._rejection(raw, None, "bad_payload", "the hub could not decode this"),
                )
            )

    # ------------------------------------------------------------------ message level

    def _decode(self, raw: RawMessage) -> Decoded:
        try:
            info = parse_topic(raw.topic, self._prefix)
        except TopicError as exc:
            return self._refuse(raw, None, exc.reason, exc.detail)
        payload = raw.payload
        if len(payload) > self._max_bytes:
            return self._refuse(
                raw,
                info,
                "oversize",
                f"payload is {len(payload)} bytes; the limit is {self._max_bytes}",
            )
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._refuse(raw, info, "invalid_utf8", f"payload is not UTF-8: {exc.reason}")
        try:
            doc = _JSON.decode(text)
        except (ValueError, RecursionError) as exc:
            return self._refuse(raw, info, "invalid_json", f"payload is not JSON: {exc}"[:300])
        if info.kind == "status":
            return self._status(raw, info, doc)
        kind = type(doc)
        if kind is dict:
            if "readings" in doc:
                return self._batch(raw, info, doc["readings"])
            try:
                return Decoded(readings=(self._reading(doc, info, raw.received_ms),))
            except _Refused as exc:
                return self._refuse(raw, info, exc.reason, exc.detail)
        if kind is list:
            return self._senml(raw, info, doc)
        return self._refuse(
            raw,
            info,
            "bad_payload",
            f"payload is a JSON {_json_type(doc)}; expected an object "
            '({"metrics": …} or {"readings": […]}) or a SenML array',
        )

    def _batch(self, raw: RawMessage, info: TopicInfo, items: Any) -> Decoded:
        if type(items) is not list:
            return self._refuse(raw, info, "bad_payload", '"readings" must be an array')
        if not items:
            return self._refuse(raw, info, "bad_payload", '"readings" is empty')
        if len(items) > self._max_batch:
            return self._refuse(
                raw,
                info,
                "batch_too_large",
                f"batch of {len(items)} readings; the limit is {self._max_batch}",
            )
        readings: list[Reading] = []
        rejections: list[Rejection] = []
        n = len(items)
        for i, item in enumerate(items):
            try:
                readings.append(self._reading(item, info, raw.received_ms))
            except _Refused as exc:
                rejections.append(
                    self._rejection(
                        raw,
                        info,
                        exc.reason,
                        f"readings[{i}] of {n}: {exc.detail}",
                        _dump(item, self._keep_bytes),
                    )
                )
        return Decoded(readings=tuple(readings), rejections=tuple(rejections))

    def _senml(self, raw: RawMessage, info: TopicInfo, pack: list[Any]) -> Decoded:
        try:
            records, problems = senml.resolve(pack, raw.received_ms)
        except senml.SenmlError as exc:
            return self._refuse(raw, info, "bad_senml", str(exc))
        rejections = [
            self._rejection(
                raw, info, p.reason, f"SenML {p.detail}", _dump(pack[p.index], self._keep_bytes)
            )
            for p in problems
        ]
        # Records at the same resolved time are one reading of several metrics.
        by_time: dict[int, dict[str, MetricValue]] = {}
        for record in records:
            try:
                self._check_metric(record.metric, record.value)
                self._check_ts(record.ts_ms, raw.received_ms)
            except _Refused as exc:
                rejections.append(
                    self._rejection(
                        raw,
                        info,
                        exc.reason,
                        f"SenML record {record.index}: {exc.detail}",
                        _dump(pack[record.index], self._keep_bytes),
                    )
                )
                continue
            by_time.setdefault(record.ts_ms, {})[record.metric] = record.value
        if len(by_time) > self._max_batch:
            return self._refuse(
                raw,
                info,
                "batch_too_large",
                f"SenML pack of {len(by_time)} readings; the limit is {self._max_batch}",
            )
        readings = tuple(
            Reading(
                info.district,
                info.asset_type,
                info.device_id,
                ts_ms,
                metrics,
                None,
                raw.received_ms,
            )
            for ts_ms, metrics in by_time.items()
        )
        return Decoded(readings=readings, rejections=tuple(rejections))

    def _status(self, raw: RawMessage, info: TopicInfo, doc: Any) -> Decoded:
        if type(doc) is not dict:
            return self._refuse(
                raw, info, "bad_status", f"status is a JSON {_json_type(doc)}, not an object"
            )
        state = doc.get("state")
        if state != "online" and state != "offline":  # noqa: PLR1714 (narrows to the Literal)
            return self._refuse(
                raw, info, "bad_status", 'status needs "state": "online" or "offline"'
            )
        try:
            ts_ms = self._status_ts(doc.get("ts", _MISSING), raw.received_ms)
        except _Refused as exc:
            return self._refuse(raw, info, exc.reason, exc.detail)
        status_state: Literal["online", "offline"] = state
        return Decoded(
            statuses=(
                StatusUpdate(
                    info.district,
                    info.asset_type,
                    info.device_id,
                    status_state,
                    ts_ms,
                    raw.received_ms,
                    _extra(doc),
                ),
            )
        )

    # ------------------------------------------------------------------ reading level

    def _reading(self, obj: Any, info: TopicInfo, received_ms: int) -> Reading:
        if type(obj) is not dict:
            raise _Refused("bad_payload", f"is a JSON {_json_type(obj)}, not an object")
        ts_ms = self._ts_ms(obj.get("ts", _MISSING), received_ms)
        self._check_ts(ts_ms, received_ms)
        seq = obj.get("seq")
        if seq is not None and (type(seq) is not int or not 0 <= seq <= _INT_MAX):
            raise _Refused("bad_seq", f"seq must be a non-negative integer, not {_short(seq)}")
        metrics = obj.get("metrics")
        if type(metrics) is not dict or not metrics:
            raise _Refused("no_metrics", '"metrics" must be a non-empty object')
        for name, value in metrics.items():
            self._check_metric(name, value)
        return Reading(
            info.district, info.asset_type, info.device_id, ts_ms, metrics, seq, received_ms
        )

    def _check_metric(self, name: str, value: Any) -> None:
        if name not in self._good_metrics:
            if METRIC_RE.fullmatch(name) is None:
                raise _Refused(
                    "bad_metric_name",
                    f"metric name {name[:80]!r} does not match [a-z][a-z0-9_]{{0,63}}",
                )
            if len(self._good_metrics) < _METRIC_CACHE_SIZE:
                self._good_metrics.add(name)
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise _Refused("bad_metric_value", f"{name}: {value} is not a finite number")
        elif kind is int:
            if not _INT_MIN <= value <= _INT_MAX:
                raise _Refused("bad_metric_value", f"{name}: integer out of the 64-bit range")
        elif kind is not bool:
            raise _Refused(
                "bad_metric_value",
                f"{name}: {_short(value)} is a {_json_type(value)}; "
                "values are finite numbers or booleans",
            )

    def _ts_ms(self, ts: Any, received_ms: int) -> int:
        if ts is _MISSING:
            return received_ms
        kind = type(ts)
        if kind is int:
            return int(ts)
        if kind is str:
            return _rfc3339_ms(ts)
        raise _Refused(
            "bad_ts",
            f"ts must be epoch milliseconds (integer) or an RFC 3339 string, not {_short(ts)}",
        )

    def _status_ts(self, ts: Any, received_ms: int) -> int:
        # A retained status may be old (it is the device's last word): only
        # impossible or future times are refused, never old ones.
        ts_ms = self._ts_ms(ts, received_ms)
        if ts_ms > received_ms + self._future_ms:
            raise _Refused(
                "ts_future", f"ts {ts_ms} is {(ts_ms - received_ms) // 1000} s in the future"
            )
        return ts_ms

    def _check_ts(self, ts_ms: int, received_ms: int) -> None:
        if ts_ms > received_ms + self._future_ms:
            raise _Refused(
                "ts_future",
                f"ts {ts_ms} is {(ts_ms - received_ms) // 1000} s in the future; "
                f"the tolerance is {self._future_ms // 1000} s",
            )
        if ts_ms < received_ms - self._backfill_ms:
            hint = (
                " (it looks like seconds; ts is in milliseconds)"
                if _SECONDS_HINT[0] <= ts_ms < _SECONDS_HINT[1]
                else ""
            )
            raise _Refused(
                "ts_too_old",
                f"ts {ts_ms} is older than the backfill window of "
                f"{self._backfill_ms // 86_400_000} days{hint}",
            )

    # ------------------------------------------------------------------ rejections

    def _rejection(
        self,
        raw: RawMessage,
        info: TopicInfo | None,
        reason: str,
        detail: str,
        payload: bytes | None = None,
    ) -> Rejection:
        body = raw.payload if payload is None else payload
        return Rejection(
            topic=raw.topic[:512],
            reason=reason,
            detail=detail,
            payload=body[: self._keep_bytes],
            received_ms=raw.received_ms,
            device_id=info.device_id if info else None,
            district=info.district if info else None,
        )

    def _refuse(self, raw: RawMessage, info: TopicInfo | None, reason: str, detail: str) -> Decoded:
        return Decoded(rejections=(self._rejection(raw, info, reason, detail),))


def _rfc3339_ms(text: str) -> int:
    """Epoch ms of an RFC 3339 date-time with an offset (``Z`` or ``±hh:mm``)."""
    if len(text) > _MAX_TS_TEXT or len(text) < 20 or text[10] not in "Tt ":
        raise _Refused("bad_ts", f"ts {text[:_MAX_TS_TEXT]!r} is not an RFC 3339 date-time")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _Refused("bad_ts", f"ts {text!r} is not an RFC 3339 date-time") from None
    if when.tzinfo is None:
        raise _Refused("bad_ts", f"ts {text!r} has no UTC offset (add Z or ±hh:mm)")
    return (when - _EPOCH) // _ONE_MS


def _extra(doc: dict[str, Any]) -> dict[str, object]:
    extra: dict[str, object] = {}
    for key, value in doc.items():
        if key in ("state", "ts") or len(key) > _MAX_EXTRA_KEY:
            continue
        if len(extra) >= _MAX_STATUS_EXTRA:
            break
        if type(value) is str:
            extra[key] = value[:_MAX_EXTRA_TEXT]
        elif value is None or type(value) in (int, float, bool):
            extra[key] = value
    return extra


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, dict | list) else _json_type(value)
    return text[:60]


def _dump(item: Any, limit: int) -> bytes:
    """The JSON of one refused reading or record, as kept in the dead letter."""
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()[:limit]
