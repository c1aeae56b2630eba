"""SenML base-field resolution (RFC 8428 §4)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.ingest.senml import RELATIVE_TIME_LIMIT, SenmlError, resolve

NOW = 1_764_178_200_000


def test_base_fields_carry_forward_until_replaced() -> None:
    """bn, bt, bu and bv apply to later records until a record sets them again."""
    records, problems = resolve(
        [
            {"bn": "dev:", "bt": 1_700_000_000, "bu": "m", "bv": 10, "n": "a", "v": 1},
            {"n": "b", "v": 2, "t": 1},
            {"bn": "other:", "bv": 0, "n": "c", "v": 3, "u": "V"},
        ],
        NOW,
    )
    assert problems == []
    assert [(r.name, r.metric, r.ts_ms, r.value, r.unit) for r in records] == [
        ("dev:a", "a", 1_700_000_000_000, 11, "m"),
        ("dev:b", "b", 1_700_000_001_000, 12, "m"),
        ("other:c", "c", 1_700_000_000_000, 3, "V"),
    ]


def test_record_without_n_uses_base_name_as_metric() -> None:
    """With no n, the resolved name is the base name and so is the metric."""
    records, _ = resolve([{"bn": "water_level_m", "v": 1.0}], NOW)
    assert records[0].metric == "water_level_m"


@pytest.mark.parametrize("pack", [[], [{"bver": 0, "v": 1}], [{"bt": "x", "n": "a", "v": 1}]])
def test_pack_errors_raise(pack: list[Any]) -> None:
    """A pack-level problem raises SenmlError."""
    with pytest.raises(SenmlError):
        resolve(pack, NOW)


_names = st.from_regex(r"\A[a-z]{1,8}\Z")
_times = st.integers(min_value=-(10**6), max_value=2 * 10**9)


@given(st.integers(min_value=RELATIVE_TIME_LIMIT, max_value=4 * 10**9), _times, _names)
def test_absolute_time_is_base_time_plus_offset(bt: int, t: int, n: str) -> None:
    """At or above 2**28 s, bt + t is an absolute epoch time."""
    if bt + t < RELATIVE_TIME_LIMIT:
        return
    records, _ = resolve([{"bt": bt, "n": n, "t": t, "v": 1}], NOW)
    assert records[0].ts_ms == (bt + t) * 1000


@given(st.integers(min_value=-(10**6), max_value=RELATIVE_TIME_LIMIT - 1), _names)
def test_small_times_are_relative_to_now(t: int, n: str) -> None:
    """Below 2**28 s, the time is an offset from the receive time."""
    records, _ = resolve([{"n": n, "t": t, "v": 1}], NOW)
    assert records[0].ts_ms == NOW + t * 1000


@given(
    st.lists(
        st.fixed_dictionaries(
            {"n": _names},
            optional={
                "v": st.integers(-100, 100) | st.floats(-1e6, 1e6),
                "vb": st.booleans(),
                "vs": st.text(max_size=3),
                "bv": st.integers(-5, 5),
                "t": st.integers(-100, 100),
            },
        ),
        min_size=1,
        max_size=15,
    )
)
def test_every_record_is_resolved_or_refused_once(pack: list[dict[str, Any]]) -> None:
    """Each record ends up exactly once, as a resolved record or a problem, in pack order."""
    records, problems = resolve(pack, NOW)
    indexes = sorted([r.index for r in records] + [p.index for p in problems])
    assert indexes == list(range(len(pack)))
    for record in records:
        source = pack[record.index]
        assert "v" in source or "vb" in source
        assert record.metric == source["n"]
