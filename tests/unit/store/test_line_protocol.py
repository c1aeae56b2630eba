"""Readings as line protocol: escaping, stable field types, reserved names, speed."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.messages import Reading
from hub.store.line_protocol import (
    LineError,
    escape_key,
    escape_measurement,
    reading_to_line,
    readings_to_lines,
)


def _split(text: str, seps: str, *, quotes: bool = False) -> list[str]:
    """Split on unescaped separators (and outside double quotes when asked)."""
    parts, cur, i, quoted = [], "", 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if quotes and ch == '"':
            quoted = not quoted
        if ch in seps and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    return parts


def _first_split(text: str, sep: str) -> tuple[str, str]:
    """Split at the first unescaped ``sep`` (quotes are literal in keys)."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            return text[:i], text[i + 1 :]
        i += 1
    raise AssertionError(f"no {sep!r} in {text!r}")


def _unescape(text: str) -> str:
    out, i = "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ',= "\\':
            out += text[i + 1]
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def _parse(line: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    """A small, independent line-protocol reader for the tests."""
    series, rest = _first_split(line, " ")
    fields, _, ts = rest.rpartition(" ")
    measurement, *tags = _split(series, ",")
    tag_map = {}
    for tag in tags:
        key, value = _first_split(tag, "=")
        tag_map[_unescape(key)] = _unescape(value)
    field_map = {}
    for item in _split(fields, ",", quotes=True):
        key, value = _first_split(item, "=")
        field_map[_unescape(key)] = value
    return _unescape(measurement), tag_map, field_map, int(ts)


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\\"),
    min_size=1,
    max_size=20,
)


# Field keys never contain quotes in practice (metric names are [a-z0-9_]); test the
# characters that need escaping there.
metric_names = st.text(alphabet="abz09_ ,=", min_size=1, max_size=12)


@given(asset_type=names, district=names, device=names, metric=metric_names)
def test_escaping_round_trips_any_name(
    asset_type: str, district: str, device: str, metric: str
) -> None:
    """Commas, spaces, equals signs and quotes in any name survive escaping and parsing."""
    if metric in {"seq", "quality", "out_of_range"}:
        return
    reading = Reading(district, asset_type, device, 1, {metric: 1.5})
    m, tags, fields, ts = _parse(reading_to_line(reading))
    assert m == asset_type
    assert tags == {"district": district, "device_id": device}
    assert fields == {metric: "1.5"}
    assert ts == 1


def test_field_types_are_stable() -> None:
    """Bools are booleans, every number a float (ints too), seq an integer with `i`."""
    line = reading_to_line(
        Reading(
            "d01",
            "manhole",
            "mh-1",
            1764178200123,
            {"a": True, "b": False, "c": 3, "d": 0.1},
            seq=42,
        )
    )
    assert (
        line
        == "manhole,district=d01,device_id=mh-1 a=true,b=false,c=3.0,d=0.1,seq=42i 1764178200123"
    )


def test_quality_fields_for_out_of_range_readings() -> None:
    """quality != ok adds string fields quality and out_of_range (comma-separated)."""
    reading = Reading(
        "d01",
        "manhole",
        "mh-1",
        5,
        {"h2s_ppm": 900.0, "water_level_m": 9.0},
        quality="out_of_range",
        out_of_range=("h2s_ppm", "water_level_m"),
    )
    _, _, fields, _ = _parse(reading_to_line(reading))
    assert fields["quality"] == '"out_of_range"'
    assert fields["out_of_range"] == '"h2s_ppm,water_level_m"'


def test_string_field_escapes_quotes_and_backslashes() -> None:
    """A quality string with quotes and backslashes is escaped inside its double quotes."""
    reading = Reading("d01", "x", "y", 5, {"v": 1.0}, quality='a"b\\c', out_of_range=())
    assert 'quality="a\\"b\\\\c"' in reading_to_line(reading)


@pytest.mark.parametrize(
    ("metrics", "seq", "why"),
    [
        ({"seq": 1.0}, None, "reserved"),
        ({"quality": 1.0}, None, "reserved"),
        ({"v": math.inf}, None, "finite"),
        ({"v": math.nan}, None, "finite"),
        ({}, None, "no metrics"),
        ({"v": 1.0}, 2**63, "64-bit"),
    ],
)
def test_unrepresentable_readings_are_refused(
    metrics: dict[str, float], seq: int | None, why: str
) -> None:
    """Reserved names, non-finite numbers, empty metrics, huge seq: refused with a reason."""
    bad = Reading("d01", "x", "y", 1, metrics, seq=seq)
    good = Reading("d01", "x", "y", 2, {"v": 2.0})
    lines, refused = readings_to_lines([bad, good])
    assert [r for r, _ in lines] == [good]
    assert [r for r, _ in refused] == [bad]
    assert why in refused[0][1]


def test_newlines_cannot_be_escaped() -> None:
    """Line protocol has no escape for a newline in a name: LineError, not a broken batch."""
    with pytest.raises(LineError):
        escape_key("a\nb")
    with pytest.raises(LineError):
        escape_measurement("a\rb")


def test_line_protocol_is_fast() -> None:
    """Formatting a typical five-metric reading takes a few µs (bound generous for shared CI)."""
    reading = Reading(
        "d01",
        "air_quality",
        "aq-00042",
        1764178200123,
        {
            "pm2_5_ug_m3": 12.5,
            "pm10_ug_m3": 20.25,
            "no2_ug_m3": 31.0,
            "temperature_c": 11.5,
            "humidity_pct": 81.0,
        },
        seq=42,
    )
    n = 5000
    start = time.perf_counter()
    for _ in range(n):
        reading_to_line(reading)
    assert (time.perf_counter() - start) / n * 1e6 < 40
