"""The journal record codec: exact, versioned round trips."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import records
from hub.messages import METRIC_RE, Reading, Rejection, StatusUpdate

names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
metric_names = st.from_regex(METRIC_RE, fullmatch=True)
values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
)
text = st.text(max_size=40)

readings = st.builds(
    Reading,
    district=names,
    asset_type=names,
    device_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", fullmatch=True),
    ts_ms=st.integers(min_value=0, max_value=2**53),
    metrics=st.dictionaries(metric_names, values, min_size=1, max_size=8),
    seq=st.none() | st.integers(min_value=0, max_value=2**64),
    received_ms=st.integers(min_value=0, max_value=2**53),
    quality=st.sampled_from(["ok", "out_of_range"]),
    out_of_range=st.lists(metric_names, max_size=3).map(tuple),
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
statuses = st.builds(
    StatusUpdate,
    district=names,
    asset_type=names,
    device_id=names,
    state=st.sampled_from(["online", "offline"]),
    ts_ms=st.integers(min_value=0, max_value=2**53),
    received_ms=st.integers(min_value=0, max_value=2**53),
    extra=st.dictionaries(text, json_scalars, max_size=4),
)
rejections = st.builds(
    Rejection,
    topic=text,
    reason=names,
    detail=text,
    payload=st.binary(max_size=200),
    received_ms=st.integers(min_value=0, max_value=2**53),
    device_id=st.none() | names,
    district=st.none() | names,
)


def _typed(metrics: object) -> list[tuple[str, type, object]]:
    assert isinstance(metrics, dict)
    return sorted((k, type(v), v) for k, v in metrics.items())


@given(readings)
def test_reading_round_trips_exactly(reading: Reading) -> None:
    """A reading decodes to an equal reading, every value keeping its exact type."""
    back = records.decode(records.encode(reading))
    assert back == reading
    assert isinstance(back, Reading)
    assert _typed(back.metrics) == _typed(reading.metrics)
    assert type(back.seq) is type(reading.seq)


@given(st.one_of(statuses, rejections))
def test_status_and_rejection_round_trip(msg: StatusUpdate | Rejection) -> None:
    """Status updates and rejections (with binary payloads) decode to equal messages."""
    assert records.decode(records.encode(msg)) == msg


def test_bool_int_float_stay_apart() -> None:
    """True, 1 and 1.0 are different values in the journal (InfluxDB field types depend on it)."""
    reading = Reading("d01", "streetlight", "sl-1", 1, {"a": True, "b": 1, "c": 1.0, "d": -0.0})
    back = records.decode(records.encode(reading))
    assert isinstance(back, Reading)
    assert [type(back.metrics[k]) for k in "abcd"] == [bool, int, float, float]
    assert str(back.metrics["d"]) == "-0.0"


def test_record_carries_type_tag_and_version() -> None:
    """Every record starts with its type tag and format version (old journals stay readable)."""
    reading = Reading("d01", "bridge", "b-1", 1, {"strain_ue": 1.5})
    assert records.encode(reading)[:2] == b"R\x01"


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"R",
        b"R\x02[]",
        b"Q\x01[1]",
        b"R\x01not json",
        b"R\x01[1,2]",
        b"R\x01" + b"[" * 100_000,
    ],
)
def test_undecodable_record_raises_record_error(blob: bytes) -> None:
    """Unknown tags, versions and corrupt bodies raise RecordError, nothing else."""
    with pytest.raises(records.RecordError):
        records.decode(blob)


@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_record_error(blob: bytes) -> None:
    """Arbitrary bytes either decode or raise RecordError."""
    with contextlib.suppress(records.RecordError):
        records.decode(blob)


def test_codec_is_fast_enough_for_15k_readings_per_second() -> None:
    """encode + decode of a typical reading stays well under the 66 µs a 15k/s budget allows."""
    reading = Reading(
        "d01",
        "air_quality",
        "aq-00042",
        1_764_178_200_123,
        {"pm2_5_ug_m3": 12.5, "pm10_ug_m3": 20.25, "no2_ug_m3": 31.0, "temperature_c": 11.5},
        seq=42,
        received_ms=1_764_178_200_150,
    )
    n = 5000
    start = time.perf_counter()
    for _ in range(n):
        records.decode(records.encode(reading))
    per_reading_us = (time.perf_counter() - start) / n * 1e6
    # Generous bound (the CI machine is shared); a few µs is typical.
    assert per_reading_us < 60, per_reading_us
