"""Payload decoding (CONTRACT §2): every path to a reading, a status or a rejection."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.decode import REASONS, Decoded, Decoder
from hub.messages import METRIC_RE, RawMessage
from hub.settings import IngestSettings

NOW = 1_764_178_200_000
TOPIC = "city/d01/flood_gauge/gauge-1/telemetry"
STATUS = "city/d01/flood_gauge/gauge-1/status"


def decode(payload: object, topic: str = TOPIC, **overrides: Any) -> Decoded:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    decoder = Decoder(IngestSettings(**overrides), "city")
    return decoder.decode(RawMessage(topic, body, NOW, mid=7))


def reasons(decoded: Decoded) -> list[str]:
    return [r.reason for r in decoded.rejections]


def test_single_reading_keeps_types_seq_and_identity() -> None:
    """A single reading decodes with ts, seq, ints as ints, bools as bools, floats as floats."""
    out = decode({"ts": NOW - 5, "seq": 42, "metrics": {"a": 1, "b": 2.5, "lamp_on": True}})
    assert out.rejections == ()
    (r,) = out.readings
    assert (r.district, r.asset_type, r.device_id) == ("d01", "flood_gauge", "gauge-1")
    assert (r.ts_ms, r.seq, r.received_ms) == (NOW - 5, 42, NOW)
    assert r.metrics == {"a": 1, "b": 2.5, "lamp_on": True}
    assert type(r.metrics["a"]) is int
    assert type(r.metrics["lamp_on"]) is bool


def test_missing_ts_means_receive_time_and_missing_seq_is_none() -> None:
    """Without ts the hub's receive time is used; without seq, seq is None."""
    (r,) = decode({"metrics": {"x": 1.0}}).readings
    assert r.ts_ms == NOW
    assert r.seq is None


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2025-11-26T17:30:00.123Z", 1_764_178_200_123),
        ("2025-11-26T18:30:00.123+01:00", 1_764_178_200_123),
        ("2025-11-26 17:30:00Z", 1_764_178_200_000),
    ],
)
def test_rfc3339_timestamps_with_offset(ts: str, expected: int) -> None:
    """RFC 3339 strings with Z or an offset become epoch milliseconds."""
    (r,) = decode({"ts": ts, "metrics": {"x": 1}}).readings
    assert r.ts_ms == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"ts": "2025-11-26T17:30:00", "metrics": {"x": 1}}, "bad_ts"),
        ({"ts": "yesterday", "metrics": {"x": 1}}, "bad_ts"),
        ({"ts": 1.5e12, "metrics": {"x": 1}}, "bad_ts"),
        ({"ts": True, "metrics": {"x": 1}}, "bad_ts"),
        ({"ts": None, "metrics": {"x": 1}}, "bad_ts"),
        ({"ts": NOW + 301_000, "metrics": {"x": 1}}, "ts_future"),
        ({"ts": NOW - 31 * 86_400_000, "metrics": {"x": 1}}, "ts_too_old"),
        ({"seq": -1, "metrics": {"x": 1}}, "bad_seq"),
        ({"seq": 1.0, "metrics": {"x": 1}}, "bad_seq"),
        ({"seq": "1", "metrics": {"x": 1}}, "bad_seq"),
        ({"seq": 2**63, "metrics": {"x": 1}}, "bad_seq"),
        ({"metrics": {}}, "no_metrics"),
        ({"metrics": [1]}, "no_metrics"),
        ({"ts": NOW}, "no_metrics"),
        ({"metrics": {"Water": 1}}, "bad_metric_name"),
        ({"metrics": {"1x": 1}}, "bad_metric_name"),
        ({"metrics": {"x" * 65: 1}}, "bad_metric_name"),
        ({"metrics": {"x": "1.2"}}, "bad_metric_value"),
        ({"metrics": {"x": None}}, "bad_metric_value"),
        ({"metrics": {"x": {"v": 1}}}, "bad_metric_value"),
        ({"metrics": {"x": [1]}}, "bad_metric_value"),
        ({"metrics": {"x": 2**64}}, "bad_metric_value"),
        ("just a string", "bad_payload"),
        (42, "bad_payload"),
        ({"readings": {}}, "bad_payload"),
        ({"readings": []}, "bad_payload"),
    ],
)
def test_each_contract_breach_is_refused_with_its_reason(payload: object, reason: str) -> None:
    """Each breach of §2 gives exactly one rejection with the documented reason code."""
    out = decode(payload)
    assert out.readings == ()
    assert reasons(out) == [reason]
    assert out.rejections[0].device_id == "gauge-1"
    assert out.rejections[0].district == "d01"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"metrics": {"x": NaN}}', "invalid_json"),
        (b'{"metrics": {"x": Infinity}}', "invalid_json"),
        (b'{"metrics": {"x": -Infinity}}', "invalid_json"),
        (b'{"metrics": {"x": 1e999}}', "bad_metric_value"),
        (b'{"metrics": {"x": 1', "invalid_json"),
        (b"", "invalid_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[" * 100_000 + b"]" * 100_000, "oversize"),
    ],
)
def test_raw_byte_problems(body: bytes, reason: str) -> None:
    """NaN/Infinity, broken JSON, non-UTF-8 and oversize payloads are refused by reason."""
    assert reasons(decode(body)) == [reason]


def test_deep_nesting_within_the_size_limit_is_invalid_json_not_a_crash() -> None:
    """Pathological nesting is refused, not a RecursionError."""
    out = decode(b"[" * 60_000 + b"]" * 60_000, max_payload_bytes=200_000)
    assert reasons(out) in (["invalid_json"], ["bad_senml"])


def test_seconds_instead_of_milliseconds_gets_a_hint() -> None:
    """A ts in seconds is too old, and the detail says it looks like seconds."""
    out = decode({"ts": NOW // 1000, "metrics": {"x": 1}})
    assert reasons(out) == ["ts_too_old"]
    assert "seconds" in out.rejections[0].detail


def test_bad_topic_rejection_has_no_device() -> None:
    """A bad topic is refused before the payload is looked at."""
    out = decode({"metrics": {"x": 1}}, topic="city/alerts/x/y/telemetry")
    assert reasons(out) == ["bad_topic"]
    assert out.rejections[0].device_id is None


def test_limits_come_from_settings() -> None:
    """Size, future tolerance and backfill window follow IngestSettings."""
    assert reasons(decode(b'{"metrics":{"x":1}}' + b" " * 60, max_payload_bytes=64)) == ["oversize"]
    assert reasons(decode({"ts": NOW + 2000, "metrics": {"x": 1}}, future_tolerance_s=1)) == [
        "ts_future"
    ]
    assert reasons(decode({"ts": NOW - 2000, "metrics": {"x": 1}}, backfill_window_s=1)) == [
        "ts_too_old"
    ]


def test_rejection_payload_is_truncated() -> None:
    """The payload kept with a rejection is cut to dead_letter_payload_bytes."""
    out = decode(b"x" * 5000, dead_letter_payload_bytes=100)
    assert reasons(out) == ["invalid_json"]
    assert out.rejections[0].payload == b"x" * 100


def test_batch_keeps_good_readings_and_refuses_the_bad_one_alone() -> None:
    """One bad reading in a batch is its own rejection; the others are kept in order."""
    out = decode(
        {
            "readings": [
                {"ts": NOW - 3, "seq": 1, "metrics": {"x": 1}},
                {"ts": NOW - 2, "seq": 2, "metrics": {"x": "bad"}},
                "not an object",
                {"ts": NOW - 1, "seq": 3, "metrics": {"x": 3}},
            ]
        }
    )
    assert [r.seq for r in out.readings] == [1, 3]
    assert reasons(out) == ["bad_metric_value", "bad_payload"]
    assert "readings[1]" in out.rejections[0].detail
    assert json.loads(out.rejections[0].payload)["seq"] == 2


def test_batch_over_the_limit_is_refused_whole() -> None:
    """More than max_batch_readings readings: the message is refused as batch_too_large."""
    batch = {"readings": [{"metrics": {"x": i}} for i in range(11)]}
    assert reasons(decode(batch, max_batch_readings=10)) == ["batch_too_large"]
    assert len(decode(batch, max_batch_readings=11).readings) == 11


def test_senml_pack_merges_records_at_the_same_time() -> None:
    """SenML records with the same resolved time become one reading; n is the metric."""
    pack = [
        {
            "bn": "urn:dev:id:gauge-1:",
            "bt": 1_764_178_100,
            "n": "water_level_m",
            "u": "m",
            "v": 1.5,
        },
        {"n": "battery_v", "u": "V", "v": 3.6},
        {"n": "water_level_m", "t": 60, "v": 1.6},
        {"n": "lamp_on", "t": 60, "vb": True},
    ]
    out = decode(pack)
    assert out.rejections == ()
    assert [(r.ts_ms, dict(r.metrics)) for r in out.readings] == [
        (1_764_178_100_000, {"water_level_m": 1.5, "battery_v": 3.6}),
        (1_764_178_160_000, {"water_level_m": 1.6, "lamp_on": True}),
    ]


def test_senml_refuses_valueless_records_alone() -> None:
    """SenML records without a numeric/boolean value are refused one by one."""
    pack = [
        {"bn": "x:", "n": "water_level_m"},
        {"n": "note", "vs": "hello"},
        {"n": "blob", "vd": "aGk="},
        {"n": "battery_v", "v": 3.6},
    ]
    out = decode(pack)
    assert reasons(out) == ["bad_senml", "bad_senml", "bad_senml"]
    assert [dict(r.metrics) for r in out.readings] == [{"battery_v": 3.6}]


def test_senml_relative_time_is_relative_to_receive_time() -> None:
    """A SenML time below 2**28 (incl. none, and negative) is relative to now (RFC 8428)."""
    out = decode([{"n": "a", "v": 1}, {"n": "b", "t": -10, "v": 2}])
    assert [(r.ts_ms, dict(r.metrics)) for r in out.readings] == [
        (NOW, {"a": 1}),
        (NOW - 10_000, {"b": 2}),
    ]


@pytest.mark.parametrize(
    "pack",
    [
        [],
        [{"bver": 11, "n": "a", "v": 1}],
        [{"bn": 5, "n": "a", "v": 1}],
        [{"n": "a", "v": 1, "crit_": 1}],
    ],
)
def test_senml_pack_level_problems(pack: list[Any]) -> None:
    """Empty packs, newer versions, broken base fields and unknown must-understand fields."""
    out = decode(pack)
    assert out.readings == ()
    assert reasons(out) == ["bad_senml"]


def test_senml_bad_metric_name_and_future_record_refused_alone() -> None:
    """SenML records are checked like readings: bad names and times refused per record."""
    pack = [
        {"bt": NOW / 1000, "n": "Bad", "v": 1},
        {"n": "good", "t": 3600, "v": 2},
        {"n": "good", "v": 3},
    ]
    out = decode(pack)
    assert reasons(out) == ["bad_metric_name", "ts_future"]
    assert [dict(r.metrics) for r in out.readings] == [{"good": 3}]


def test_status_online_with_extras() -> None:
    """A status payload becomes a StatusUpdate; extra scalar keys are kept, bounded."""
    payload = {"state": "online", "ts": NOW - 1000, "fw": "1.2", "nested": {"a": 1}}
    payload.update({f"k{i}": i for i in range(40)})
    (s,) = decode(payload, topic=STATUS).statuses
    assert (s.state, s.ts_ms, s.device_id) == ("online", NOW - 1000, "gauge-1")
    assert s.extra["fw"] == "1.2"
    assert "nested" not in s.extra
    assert len(s.extra) <= 16


def test_old_retained_status_is_accepted() -> None:
    """A status older than the backfill window is still the device's last word: kept."""
    (s,) = decode({"state": "offline", "ts": NOW - 90 * 86_400_000}, topic=STATUS).statuses
    assert s.state == "offline"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"state": "sleeping"}, "bad_status"),
        ({"ts": NOW}, "bad_status"),
        ([1], "bad_status"),
        (b"", "invalid_json"),
        ({"state": "online", "ts": "noon"}, "bad_ts"),
        ({"state": "online", "ts": NOW + 10**9}, "ts_future"),
    ],
)
def test_bad_status_payloads(payload: object, reason: str) -> None:
    """Status payloads that break §1 are refused with a reason."""
    assert reasons(decode(payload, topic=STATUS)) == [reason]


# ---------------------------------------------------------------- properties

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
_json = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["ts", "seq", "metrics", "readings", "x", "bn", "n", "v", "t", "state"])
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)
_topics = st.sampled_from([TOPIC, STATUS, "city/alerts/a/b/telemetry"]) | st.text(max_size=40)


@settings(max_examples=300)
@given(_topics, st.binary(max_size=300))
def test_decode_never_raises_on_arbitrary_bytes(topic: str, body: bytes) -> None:
    """Any topic and any bytes decode to a Decoded (at least one outcome), never an exception."""
    out = Decoder(IngestSettings(), "city").decode(RawMessage(topic, body, NOW))
    assert out.readings or out.statuses or out.rejections
    assert all(r.reason in REASONS for r in out.rejections)


@settings(max_examples=250)
@given(_topics, _json)
def test_accepted_readings_always_satisfy_the_contract(topic: str, doc: Any) -> None:
    """Whatever JSON comes in, accepted readings satisfy §2; rejections use known codes."""
    decoder = Decoder(IngestSettings(), "city")
    out = decoder.decode(RawMessage(topic, json.dumps(doc).encode(), NOW))
    assert all(r.reason in REASONS for r in out.rejections)
    assert all(len(r.payload) <= 1024 for r in out.rejections)
    for reading in out.readings:
        assert reading.metrics
        assert NOW - 30 * 86_400_000 <= reading.ts_ms <= NOW + 300_000
        assert reading.seq is None or (type(reading.seq) is int and reading.seq >= 0)
        for name, value in reading.metrics.items():
            assert METRIC_RE.fullmatch(name)
            assert type(value) in (int, float, bool)
            assert not isinstance(value, float) or math.isfinite(value)


@given(
    st.lists(
        st.fixed_dictionaries(
            {"seq": st.integers(0, 10**6)},
            optional={"metrics": st.dictionaries(st.sampled_from(["a", "b"]), _json_scalars)},
        ),
        min_size=1,
        max_size=20,
    )
)
def test_batch_outcomes_add_up(items: list[dict[str, Any]]) -> None:
    """Each reading of a batch ends up either accepted or rejected, exactly once."""
    out = decode({"readings": items})
    assert len(out.readings) + len(out.rejections) == len(items)
