"""SenML (RFC 8428) JSON packs: base-field resolution into plain records.

A pack is a JSON array of records. Base fields (``bn``, ``bt``, ``bu``, ``bv``,
``bs``, ``bver``) apply to their own record and to every later record until a
record sets them again (RFC 8428 §4.1). A resolved record has:

- name = ``bn`` + ``n``; the hub's metric is ``n`` (``bn`` is normally the
  device prefix such as ``urn:dev:id:gauge-17:``); a record without ``n`` uses
  the whole base name as its metric;
- time = ``bt`` + ``t`` seconds; a result below 2**28 is relative to "now"
  (the hub's receive time), as RFC 8428 §4.5.3 says; absent means now;
- value = ``v`` + ``bv`` (numbers) or ``vb`` (booleans). String (``vs``) and
  data (``vd``) values, sum-only records and records with no value cannot be
  stored as metrics: those records are refused one by one, the rest kept.

A problem with the pack as a whole (not an array of objects, a ``bver`` above
10, a mandatory-to-understand field ending in ``_``) raises :class:`SenmlError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hub.messages import MetricValue

#: RFC 8428 §4.5.3: times below this are relative to now.
RELATIVE_TIME_LIMIT = 2**28
#: The SenML version this hub understands (RFC 8428 §4.4 default).
SENML_VERSION = 10

_BASE_TEXT = ("bn", "bu")
_BASE_NUMBERS = ("bt", "bv", "bs")
_KNOWN = frozenset(
    {"bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}
)


class SenmlError(ValueError):
    """The pack as a whole is not valid SenML."""


@dataclass(frozen=True, slots=True)
class SenmlRecord:
    """One record after base resolution."""

    index: int
    name: str
    metric: str
    ts_ms: int
    value: MetricValue
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class SenmlProblem:
    """A record that was refused, with the pack index it had."""

    index: int
    reason: str
    detail: str


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def resolve(pack: list[Any], now_ms: int) -> tuple[list[SenmlRecord], list[SenmlProblem]]:
    """Resolve ``pack``'s base fields; return the good records and the refused ones."""
    if not pack:
        raise SenmlError("empty SenML pack")
    base_name = ""
    base_time = 0.0
    base_unit: str | None = None
    base_value: float = 0
    records: list[SenmlRecord] = []
    problems: list[SenmlProblem] = []
    for index, record in enumerate(pack):
        if type(record) is not dict:
            problems.append(SenmlProblem(index, "bad_senml", f"record {index} is not an object"))
            continue
        for key in record:
            if key not in _KNOWN and key.endswith("_"):
                raise SenmlError(f"record {index} has the must-understand field {key[:40]!r}")
        # Base fields first: they apply to this record too.
        if "bver" in record:
            bver = record["bver"]
            if type(bver) is not int or bver < 1:
                raise SenmlError(f"record {index}: bver must be a positive integer")
            if bver > SENML_VERSION:
                raise SenmlError(f"record {index}: SenML version {bver} is newer than 10")
        bad_base = _bad_base(record)
        if bad_base:
            # A broken base field would corrupt every later record: refuse the pack.
            raise SenmlError(f"record {index}: {bad_base}")
        if "bn" in record:
            base_name = record["bn"]
        if "bt" in record:
            base_time = float(record["bt"])
        if "bu" in record:
            base_unit = record["bu"]
        if "bv" in record:
            base_value = record["bv"]
        resolved = _resolve_one(index, record, base_name, base_time, base_unit, base_value, now_ms)
        if isinstance(resolved, SenmlProblem):
            problems.append(resolved)
        else:
            records.append(resolved)
    return records, problems


def _bad_base(record: dict[str, Any]) -> str:
    for key in _BASE_TEXT:
        if key in record and type(record[key]) is not str:
            return f"{key} must be a string"
    for key in _BASE_NUMBERS:
        if key in record and not (_is_number(record[key]) and math.isfinite(record[key])):
            return f"{key} must be a finite number"
    return ""


def _resolve_one(
    index: int,
    record: dict[str, Any],
    base_name: str,
    base_time: float,
    base_unit: str | None,
    base_value: float,
    now_ms: int,
) -> SenmlRecord | SenmlProblem:
    name_part = record.get("n", "")
    if type(name_part) is not str:
        return SenmlProblem(index, "bad_senml", f"record {index}: n must be a string")
    name = base_name + name_part
    if not name:
        return SenmlProblem(index, "bad_senml", f"record {index} has no name (bn + n is empty)")
    metric = name_part or base_name

    t = record.get("t", 0)
    if not _is_number(t) or not math.isfinite(t):
        return SenmlProblem(index, "bad_senml", f"record {index}: t must be a finite number")
    seconds = base_time + t
    if seconds < RELATIVE_TIME_LIMIT:
        ts_ms = now_ms + round(seconds * 1000)
    else:
        ts_ms = round(seconds * 1000)

    unit = record.get("u", base_unit)
    if unit is not None and type(unit) is not str:
        return SenmlProblem(index, "bad_senml", f"record {index}: u must be a string")

    value: MetricValue
    if "v" in record:
        v = record["v"]
        if not _is_number(v):
            return SenmlProblem(index, "bad_senml", f"record {index}: v must be a number")
        value = v + base_value if base_value else v
        if type(value) is float and not math.isfinite(value):
            return SenmlProblem(
                index, "bad_metric_value", f"record {index}: value of {metric!r} is not finite"
            )
    elif "vb" in record:
        vb = record["vb"]
        if type(vb) is not bool:
            return SenmlProblem(index, "bad_senml", f"record {index}: vb must be true or false")
        value = vb
    elif "vs" in record or "vd" in record:
        return SenmlProblem(
            index,
            "bad_senml",
            f"record {index} ({metric[:64]!r}) has a string/data value; metrics are numbers "
            "or booleans",
        )
    else:
        return SenmlProblem(index, "bad_senml", f"record {index} ({metric[:64]!r}) has no value")
    return SenmlRecord(index, name, metric, ts_ms, value, unit)
