"""Durations and points in time as people write them: one grammar for every file and query.

Rule files (``for: 2m``), the routing file (``group_wait: 30s``), the device
catalog (``interval: 60s``), scenario files, the telemetry API (``every=5m``,
``start=-6h``) and ``hub rules backtest --start -1h`` all read durations here:

* a **duration** is one or more ``<number><unit>`` parts, units ``ms``, ``s``,
  ``m``, ``h`` and ``d``: ``500ms``, ``90s``, ``1.5h``, ``1h30m``, ``2d``; blanks
  between parts and before a unit are allowed (``1h 30m``, ``60 s``); ``0`` alone is
  zero. Numbers are decimal (no sign, no exponent), so a duration is never
  negative, infinite or NaN;
* a **bare number** (``for: 5``) is ambiguous, seconds or minutes? Rule files refuse it
  (``bare="error"``, the default); the formats that have always read it as seconds
  (catalog, scenarios, routing) pass ``bare="seconds"``. Zero is zero either way;
* every duration is bounded (:data:`MAX_DURATION_MS`, 10 years, or less where the
  caller says): timers add durations to epoch milliseconds in 64-bit integers;
* a **point in time** (:func:`parse_instant_ms`) is epoch milliseconds, RFC 3339 with
  a UTC offset, ``now``, or ``-<duration>`` before now (``-6h``, ``-1h30m``).

Errors are ``ValueError`` with a sentence the author can act on (pydantic turns only
``ValueError`` into a field error, so wrong types raise it too).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator

#: Milliseconds per unit, longest first (the order :func:`format_duration` writes them).
UNITS_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
#: Longest duration anywhere (10 years); callers may ask for less.
MAX_DURATION_MS = 10 * 366 * 86_400_000
#: Longest relative time (``-100d``): a reach into the past, not a timer.
MAX_RELATIVE_MS = 100 * MAX_DURATION_MS
#: Longest text read as a duration or a time (bounded work on untrusted input).
MAX_TEXT = 64

_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)\s*")
_NUMBER = re.compile(r"\s*[0-9]+(?:\.[0-9]+)?\s*")
_EXAMPLES = "write e.g. 90s, 5m, 2h or 1h30m"
_UNITS = "a unit: ms, s, m, h or d"

Bare = Literal["error", "seconds"]


def _shown(value: object) -> str:
    """``value`` for a message: its repr, cut short (input may be huge or hostile)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "...'"


def _text_ms(text: str, original: object, bare: Bare) -> float:
    if len(text) > MAX_TEXT:
        raise ValueError(f"{_shown(text)} is too long for a duration")
    if _NUMBER.fullmatch(text):
        seconds = float(text)
        if bare == "seconds" or seconds == 0:
            return seconds * 1000
        raise ValueError(f"duration {_shown(text.strip())} needs {_UNITS} ({_EXAMPLES})")
    total = 0.0
    pos = 0
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None or part.end() == pos:
            raise ValueError(f"{_shown(original)} is not a duration; {_EXAMPLES}")
        total += float(part.group(1)) * UNITS_MS[part.group(2)]
        pos = part.end()
    if pos == 0:
        raise ValueError(f"{_shown(original)} is not a duration; {_EXAMPLES}")
    return total


def _value_ms(value: object, bare: Bare) -> float:
    if isinstance(value, bool):
        raise ValueError(f"a duration is text like 90s, 5m or 2h, not {_shown(value)}")  # noqa: TRY004
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"duration {_shown(value)} must be a finite number")
        if value < 0:
            raise ValueError(f"duration {_shown(value)} must not be negative")
        if value == 0:
            return 0.0
        if bare != "seconds":
            raise ValueError(f"duration {_shown(value)} needs {_UNITS} ({_EXAMPLES})")
        # An int too large for a float is beyond every bound anyway.
        return float(value) * 1000 if value < 1e300 else math.inf
    if not isinstance(value, str):
        raise ValueError(f"a duration is text like 90s, 5m or 2h; {_EXAMPLES}")  # noqa: TRY004
    return _text_ms(value, value, bare)


def _bounded(ms: float, value: object, max_ms: int) -> float:
    if ms > max_ms:
        raise ValueError(f"{_shown(value)} is longer than {format_duration(max_ms)}")
    return ms


def parse_duration_ms(value: object, *, bare: Bare = "error", max_ms: int = MAX_DURATION_MS) -> int:
    """Whole milliseconds in ``value`` (``"90s"``, ``"1h30m"``, ``"500ms"``, ``0``)."""
    return round(_bounded(_value_ms(value, bare), value, max_ms))


def parse_duration_s(
    value: object, *, bare: Bare = "seconds", max_ms: int = MAX_DURATION_MS
) -> float:
    """Seconds in ``value`` (``"20s"``, ``"500ms"``, ``"2m"``; a bare number is seconds)."""
    return _bounded(_value_ms(value, bare), value, max_ms) / 1000


def format_duration(ms: int) -> str:
    """``ms`` as the shortest exact duration text (``0``, ``90s``, ``5m``, ``1h30m``)."""
    if ms == 0:
        return "0"
    out = []
    for unit, size in UNITS_MS.items():
        if ms >= size:
            n, ms = divmod(ms, size)
            out.append(f"{n}{unit}")
    return "".join(out)


def parse_instant_ms(text: str, now_ms: int) -> int:
    """Epoch ms of ``text``: epoch milliseconds, RFC 3339 with offset, ``now`` or ``-6h``."""
    text = text.strip()
    if text == "now":
        return now_ms
    if text.startswith("-"):
        try:
            ms = parse_duration_ms(text[1:], max_ms=MAX_RELATIVE_MS)
        except ValueError:
            raise ValueError(
                f"{_shown(text)} is not a relative time; write e.g. -30m, -6h or -1d"
            ) from None
        return now_ms - ms
    if text.isascii() and text.isdigit() and len(text) <= 15:
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{_shown(text)} is neither epoch ms, RFC 3339 with offset, now, nor like -6h"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{_shown(text)} has no UTC offset; add Z or +hh:mm")
    return int(parsed.timestamp() * 1000)


#: A pydantic field: seconds, from ``20s``, ``2m``, ``500ms`` or a bare number of seconds.
DurationSeconds = Annotated[float, BeforeValidator(parse_duration_s)]
