"""One grammar for durations and times: every file and query reads them through hub.durations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.alerts.routing import parse_routes
from hub.catalog import load_catalog
from hub.durations import (
    MAX_DURATION_MS,
    format_duration,
    parse_duration_ms,
    parse_duration_s,
    parse_instant_ms,
)
from hub.rules.loader import load_text

NOW = 1_764_178_200_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        # What the rule files accepted.
        ("0", 0),
        ("500ms", 500),
        ("90s", 90_000),
        ("5m", 300_000),
        ("1.5h", 5_400_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("1h 30m", 5_400_000),
        # What the routing file accepted.
        ("0s", 0),
        ("2d", 172_800_000),
        # What the catalog and scenarios accepted.
        ("60 s", 60_000),
        ("20s", 20_000),
        # What the telemetry API accepted.
        ("30s", 30_000),
        (" 1h ", 3_600_000),
    ],
)
def test_one_grammar_reads_what_every_old_one_read(text: str, ms: int) -> None:
    """Each form the four former grammars accepted still means the same duration."""
    assert parse_duration_ms(text) == ms
    assert parse_duration_s(text) == ms / 1000


def test_bare_numbers_are_seconds_only_where_they_always_were() -> None:
    """A bare number is refused by default (rule files) and seconds on request; 0 is 0."""
    with pytest.raises(ValueError, match="duration 5 needs a unit"):
        parse_duration_ms(5)
    with pytest.raises(ValueError, match="needs a unit"):
        parse_duration_ms("5")
    assert parse_duration_ms(0) == 0
    assert parse_duration_ms(0.0) == 0
    assert parse_duration_ms(15, bare="seconds") == 15_000
    assert parse_duration_ms("15", bare="seconds") == 15_000
    assert parse_duration_s(60) == 60.0


@pytest.mark.parametrize(
    "bad",
    [
        float("inf"),
        float("nan"),
        -1,
        "",
        " ",
        "5 minutes",
        "soon",
        "-5m",
        "1e3s",
        "1 5m",
        "٣s",
        True,
        None,
        [],
        "9" * 100 + "d",
        10**400,
    ],
)
def test_bad_durations_are_value_errors(bad: object) -> None:
    """Infinite, negative, empty, wordy, foreign-digit or huge durations raise ValueError."""
    with pytest.raises(ValueError):
        parse_duration_ms(bad, bare="seconds")


def test_durations_are_bounded() -> None:
    """Beyond the caller's bound (10 years by default) a duration is refused, not wrapped."""
    assert parse_duration_ms("3660d") == MAX_DURATION_MS
    with pytest.raises(ValueError, match="longer than 3660d"):
        parse_duration_ms("3661d")
    with pytest.raises(ValueError, match="longer than 1h"):
        parse_duration_ms("61m", max_ms=3_600_000)


@given(
    st.one_of(
        st.text(max_size=16),
        st.integers(),
        st.floats(allow_nan=True),
        st.booleans(),
        st.none(),
    )
)
def test_parser_only_raises_value_error(value: object) -> None:
    """Any input gives a bounded, non-negative duration or a ValueError, nothing else."""
    try:
        result = parse_duration_ms(value, bare="seconds")
    except ValueError:
        return
    assert 0 <= result <= MAX_DURATION_MS


@given(st.integers(min_value=0, max_value=MAX_DURATION_MS))
def test_format_then_parse_is_exact(ms: int) -> None:
    """format_duration writes text that parses back to the same milliseconds."""
    assert parse_duration_ms(format_duration(ms)) == ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("-6h", NOW - 6 * 3_600_000),
        ("-1h30m", NOW - 5_400_000),
        ("-500ms", NOW - 500),
        ("now", NOW),
        ("1764178200123", 1_764_178_200_123),
        ("2025-11-26T17:30:00Z", 1_764_178_200_000),
        ("2025-11-26T18:30:00+01:00", 1_764_178_200_000),
    ],
)
def test_instants(text: str, ms: int) -> None:
    """Epoch ms, RFC 3339 with offset, now, and -<duration> before now."""
    assert parse_instant_ms(text, NOW) == ms


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2025-11-26T17:30:00", "offset"),
        ("yesterday", "RFC 3339"),
        ("-5", "relative time"),
        ("-soon", "relative time"),
        ("9" * 16, "RFC 3339"),
    ],
)
def test_bad_instants(text: str, fragment: str) -> None:
    """Naive times, words and unit-less relative times are refused with a clear sentence."""
    with pytest.raises(ValueError, match=fragment):
        parse_instant_ms(text, NOW)


def test_every_file_type_uses_the_shared_grammar(tmp_path: Path) -> None:
    """Forms only some old grammars knew now work in rules, routing, catalog and scenarios."""
    rules = load_text(
        "rules:\n  - {id: r, kind: threshold, metric: m, op: '>', value: 1,"
        " severity: info, for: 1m 30s}\n",
        "r.yaml",
    )
    assert rules.problems == []
    assert rules.rules[0].for_ms == 90_000

    routes, problems, _ = parse_routes(
        "receivers: [{name: a, log: {}}]\nroute: {receivers: [a], group_wait: 500ms}\n",
        "routes.yaml",
    )
    assert problems == []
    assert routes is not None
    assert routes.route.group_wait == 500

    (tmp_path / "tank.yaml").write_text(
        textwrap.dedent(
            """\
            asset_type: tank
            interval: 1h30m
            metrics:
              level_m: {unit: m, min: 0, max: 10, classification: public}
            """
        )
    )
    assert load_catalog(tmp_path).expected_interval_s("tank") == 5400.0
