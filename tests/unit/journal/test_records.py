"""The journal record codec: exact, versioned round trips."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import records
from hub.messages import Reading, Rejection, StatusUpdate

# Plain alphabets rather than from_regex: as good here, and much cheaper to generate.
names = st.text(alphabet="abcdz0129_-", min_size=1, max_size=20)
metric_names = st.text(alphabet="abcxyz019_", min_size=1, max_size=20)
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
    device_id=st.text(alphabet="AZaz09_.-", min_size=1, max_size=30),
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


@pytest.fixture(params=["fast", "stdlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the orjson accelerator (when installed) and with the stdlib codec."""
    if request.param == "stdlib":
        monkeypatch.setattr(records, "_fast_dumps", None)
        monkeypatch.setattr(records, "_fast_loads", None)
    elif records._fast_dumps is None:
        pytest.skip("orjson is not installed")
    return str(request.param)


def _typed(metrics: object) -> list[tuple[str, type, object]]:
    assert isinstance(metrics, dict)
    return sorted((k, type(v), v) for k, v in metrics.items())


# The codec fixture is meant to hold for every generated example.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reading=readings)
def test_reading_round_trips_exactly(codec: str, reading: Reading) -> None:
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


def test_bool_int_float_stay_apart(codec: str) -> None:
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
    """Arbitrary bytes either decode to a journal message or raise RecordError."""
    try:
        decoded = records.decode(blob)
    except records.RecordError:
        return
    assert isinstance(decoded, (Reading, StatusUpdate, Rejection))


@given(reading=readings)
def test_both_codecs_read_each_others_records(reading: Reading) -> None:
    """A record written with orjson reads back with the stdlib and the reverse (same format)."""
    if records._fast_dumps is None or records._fast_loads is None:
        pytest.skip("orjson is not installed")
    with pytest.MonkeyPatch.context() as mp:  # a hub without orjson wrote this record
        mp.setattr(records, "_fast_dumps", None)
        mp.setattr(records, "_fast_loads", None)
        slow_encoded = records.encode(reading)
    assert records.decode(slow_encoded) == reading
    fast_encoded = records.encode(reading)
    assert records.decode(fast_encoded) == reading
    with pytest.MonkeyPatch.context() as mp:  # and one without orjson reads ours
        mp.setattr(records, "_fast_loads", None)
        assert records.decode(fast_encoded) == reading


def test_non_finite_and_huge_values_stay_exact(codec: str) -> None:
    """NaN/inf (which orjson would write as null) and 100-bit integers round-trip exactly."""
    reading = Reading("d01", "x", "y", 1, {"a": math.inf, "b": -math.inf, "c": 2**100})
    back = records.decode(records.encode(reading))
    assert back == reading
    nan = records.decode(records.encode(Reading("d01", "x", "y", 1, {"n": math.nan})))
    assert isinstance(nan, Reading)
    assert math.isnan(nan.metrics["n"])


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


def test_an_undecodable_record_in_a_batch_becomes_a_bad_record_rejection() -> None:
    """decode_all keeps its place for a record it cannot decode: a Rejection with reason
    bad_record, the record's first bytes and the given time; the others decode in order."""
    good = Reading("d01", "bridge", "b-1", 1000, {"strain_ue": 1.0})
    status = StatusUpdate("d01", "bridge", "b-1", "online", 1000)
    garbage = b"R\x01[not json" + b"x" * 5000
    out = records.decode_all(
        [records.encode(good), garbage, b"?", records.encode(status)], now_ms=42
    )
    assert [type(m).__name__ for m in out] == ["Reading", "Rejection", "Rejection", "StatusUpdate"]
    assert out[0] == good
    assert out[3] == status
    bad = out[1]
    assert isinstance(bad, Rejection)
    assert (bad.reason, bad.topic, bad.received_ms) == ("bad_record", "journal", 42)
    assert bad.payload == garbage[: records.BAD_RECORD_KEEP]
    assert "5011 bytes" in bad.detail
    assert isinstance(out[2], Rejection)
    assert out[2].reason == "bad_record"
