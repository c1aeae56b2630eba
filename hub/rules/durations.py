"""Durations in rule files: ``90s``, ``5m``, ``2h``, ``1d``, ``1h30m``, ``500ms`` or ``0``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: Longest duration a rule may name; beyond this a timer is almost surely a typo.
MAX_DURATION_MS = 366 * 86_400_000


def parse_duration_ms(value: object) -> int:
    """Milliseconds in ``value``; raises ValueError with a sentence an author can act on.

    ValueError even for wrong types: pydantic turns only ValueError into a field error.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is text like 90s, 5m or 2h, not a boolean")  # noqa: TRY004
    if isinstance(value, int | float) and value == 0:
        return 0
    if isinstance(value, int | float):
        raise ValueError(f"duration {value!r} needs a unit: ms, s, m, h or d (e.g. 90s, 5m, 2h)")  # noqa: TRY004
    if not isinstance(value, str):
        raise ValueError("a duration is text like 90s, 5m or 2h")  # noqa: TRY004
    text = value.strip().replace(" ", "")
    if text == "0":
        return 0
    pos = 0
    total = 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 5m, 2h or 1h30m")
    if total > MAX_DURATION_MS:
        raise ValueError(f"{value!r} is longer than 366 days")
    return round(total)


def format_duration(ms: int) -> str:
    """``ms`` as the shortest exact duration text (``0``, ``90s``, ``5m``, ``1h30m``)."""
    if ms == 0:
        return "0"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNIT_MS[unit]
        if ms >= size:
            n, ms = divmod(ms, size)
            out.append(f"{n}{unit}")
    return "".join(out)
