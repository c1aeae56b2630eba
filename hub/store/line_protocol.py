"""Readings as InfluxDB line protocol (CONTRACT §3 storage layout).

One line per reading::

    <asset_type>,district=<district>,device_id=<device_id> <fields> <ts_ms>

Field types are fixed per field name, because InfluxDB refuses a write whose
field type differs from the one already stored:

* a boolean metric is a boolean field (``true`` / ``false``);
* every other metric is a **float** field, even when the sensor sent an
  integer (``1`` is written as ``1.0``): a sensor that sends ``3`` one minute
  and ``3.5`` the next must not have its second reading refused;
* ``seq`` is an integer field (``42i``);
* a reading whose quality is not ``ok`` also carries the string fields
  ``quality`` and ``out_of_range`` (comma-separated metric names).

``seq``, ``quality`` and ``out_of_range`` are therefore reserved: a metric of
that name is refused (:class:`LineError`), never silently overwritten.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from hub.messages import Reading

__all__ = [
    "RESERVED_FIELDS",
    "LineError",
    "escape_key",
    "escape_measurement",
    "escape_string",
    "reading_to_line",
    "readings_to_lines",
    "refusal_reason",
]

RESERVED_FIELDS = frozenset({"seq", "quality", "out_of_range"})
MAX_INT64 = 2**63 - 1

# Characters that need a backslash, per the line-protocol reference.
_MEASUREMENT_SPECIAL = re.compile(r"[, ]")
_KEY_SPECIAL = re.compile(r"[,= ]")
_NEWLINE = re.compile(r"[\r\n]")
_MEASUREMENT_TABLE = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_TABLE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_TABLE = str.maketrans({'"': r"\"", "\\": "\\\\"})

# Escaped series keys and field keys are cached: a city has a bounded set of
# devices and metric names, and escaping is most of the per-line cost otherwise.
_SERIES_CACHE: dict[tuple[str, str, str], str] = {}
_FIELD_CACHE: dict[str, str] = {}
_CACHE_LIMIT = 200_000


class LineError(ValueError):
    """A reading that cannot be expressed in line protocol (the reason says why)."""


def escape_measurement(name: str) -> str:
    """Escape a measurement name (commas and spaces)."""
    if _NEWLINE.search(name):
        raise LineError(f"newline in measurement {name!r}")
    return name.translate(_MEASUREMENT_TABLE) if _MEASUREMENT_SPECIAL.search(name) else name


def escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key (commas, equals signs, spaces)."""
    if _NEWLINE.search(name):
        raise LineError(f"newline in name {name!r}")
    if not name:
        raise LineError("empty tag or field name")
    if name.endswith("\\"):
        raise LineError(f"name {name!r} ends with a backslash")
    return name.translate(_KEY_TABLE) if _KEY_SPECIAL.search(name) else name


def escape_string(value: str) -> str:
    """A string field value, quoted, with double quotes and backslashes escaped."""
    return '"' + value.translate(_STRING_TABLE) + '"'


def _series(reading: Reading) -> str:
    key = (reading.asset_type, reading.district, reading.device_id)
    series = _SERIES_CACHE.get(key)
    if series is None:
        series = (
            f"{escape_measurement(reading.asset_type)},district={escape_key(reading.district)}"
            f",device_id={escape_key(reading.device_id)}"
        )
        if len(_SERIES_CACHE) >= _CACHE_LIMIT:
            _SERIES_CACHE.clear()
        _SERIES_CACHE[key] = series
    return series


def _field_key(name: str) -> str:
    escaped = _FIELD_CACHE.get(name)
    if escaped is None:
        if name in RESERVED_FIELDS:
            raise LineError(f"metric name {name!r} is reserved by the storage layout")
        escaped = escape_key(name)
        if len(_FIELD_CACHE) >= _CACHE_LIMIT:
            _FIELD_CACHE.clear()
        _FIELD_CACHE[name] = escaped
    return escaped


def reading_to_line(reading: Reading) -> str:
    """One reading as one line (no trailing newline); LineError if it cannot be one."""
    parts: list[str] = []
    for name, value in reading.metrics.items():
        key = _field_key(name)
        if value is True:
            parts.append(key + "=true")
        elif value is False:
            parts.append(key + "=false")
        else:
            number = float(value)
            if not math.isfinite(number):
                raise LineError(f"metric {name!r} is not a finite number: {value!r}")
            parts.append(f"{key}={number!r}")
    if not parts:
        raise LineError("reading has no metrics")
    if reading.seq is not None:
        if not 0 <= reading.seq <= MAX_INT64:
            raise LineError(f"seq {reading.seq} does not fit a 64-bit integer field")
        parts.append(f"seq={int(reading.seq)}i")
    if reading.quality != "ok":
        parts.append("quality=" + escape_string(reading.quality))
        parts.append("out_of_range=" + escape_string(",".join(reading.out_of_range)))
    return f"{_series(reading)} {','.join(parts)} {int(reading.ts_ms)}"


def refusal_reason(reading: Reading) -> str | None:
    """Why the storage layout cannot hold ``reading``, or None (shared by every store)."""
    try:
        reading_to_line(reading)
    except (LineError, TypeError, ValueError, OverflowError) as exc:
        return f"not representable in the storage layout: {exc}"
    return None


def readings_to_lines(
    readings: Sequence[Reading],
) -> tuple[list[tuple[Reading, str]], list[tuple[Reading, str]]]:
    """Lines for the readings that can be written, and ``(reading, reason)`` for the rest."""
    lines: list[tuple[Reading, str]] = []
    refused: list[tuple[Reading, str]] = []
    for reading in readings:
        try:
            lines.append((reading, reading_to_line(reading)))
        except (LineError, TypeError, ValueError, OverflowError) as exc:
            refused.append((reading, f"not representable in the storage layout: {exc}"))
    return lines, refused
