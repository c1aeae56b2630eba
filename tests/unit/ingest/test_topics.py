"""Topic parsing (CONTRACT §1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.ingest.topics import TopicError, TopicInfo, parse_topic, subscriptions
from hub.messages import ASSET_TYPE_RE, DEVICE_ID_RE, DISTRICT_RE


def test_telemetry_topic_parses_into_device_identity() -> None:
    """A well-formed telemetry topic yields kind, district, asset type and device id."""
    assert parse_topic("city/d01/flood_gauge/FG-001.a/telemetry", "city") == TopicInfo(
        "telemetry", "d01", "flood_gauge", "FG-001.a"
    )


def test_status_topic_and_multi_level_prefix() -> None:
    """Status topics parse too, under a prefix with several levels."""
    info = parse_topic("org/city/d-2/bridge/b_9/status", "org/city")
    assert info == TopicInfo("status", "d-2", "bridge", "b_9")


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("town/d01/flood_gauge/x/telemetry", "prefix"),
        ("city/d01/flood_gauge/x/other", "telemetry' or 'status"),
        ("city/d01/flood_gauge/telemetry", "levels"),
        ("city/d01/flood_gauge/x/y/telemetry", "levels"),
        ("city/alerts/flood_gauge/x/telemetry", "reserved"),
        ("city/D01/flood_gauge/x/telemetry", "district"),
        ("city/d01/Flood/x/telemetry", "asset_type"),
        ("city/d01/flood_gauge/-x/telemetry", "device_id"),
        ("city/d01/flood_gauge/" + "x" * 65 + "/telemetry", "device_id"),
        ("city/d01/flood_gauge//telemetry", "device_id"),
        ("city/d01\n/flood_gauge/x/telemetry", "district"),
        ("city", "prefix"),
        ("", "prefix"),
    ],
)
def test_bad_topics_are_refused_with_a_precise_reason(topic: str, fragment: str) -> None:
    """Each way of breaking §1 raises TopicError(reason=bad_topic) naming the problem."""
    with pytest.raises(TopicError) as info:
        parse_topic(topic, "city")
    assert info.value.reason == "bad_topic"
    assert fragment in info.value.detail


def test_bad_topic_is_refused_again_from_the_cache() -> None:
    """A cached bad topic still raises (the cache keeps the refusal, not a None)."""
    for _ in range(2):
        with pytest.raises(TopicError):
            parse_topic("city/alerts/a/b/status", "city")


def test_subscriptions_cover_telemetry_and_status() -> None:
    """The hub subscribes to both device topics under its prefix."""
    assert subscriptions("city") == ["city/+/+/+/telemetry", "city/+/+/+/status"]


@given(st.text(max_size=200), st.sampled_from(["city", "a/b", "x"]))
def test_parse_topic_never_raises_anything_but_topic_error(topic: str, prefix: str) -> None:
    """Arbitrary text either parses into contract-valid names or raises TopicError."""
    try:
        info = parse_topic(topic, prefix)
    except TopicError as exc:
        reason = exc.reason
    else:
        reason = "ok"
        assert DISTRICT_RE.fullmatch(info.district)
        assert info.district != "alerts"
        assert ASSET_TYPE_RE.fullmatch(info.asset_type)
        assert DEVICE_ID_RE.fullmatch(info.device_id)
        assert topic == f"{prefix}/{info.district}/{info.asset_type}/{info.device_id}/{info.kind}"
    assert reason in ("ok", "bad_topic")


_name = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,10}\Z")


@given(_name, _name, st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,10}\Z"))
def test_valid_names_always_parse(district: str, asset_type: str, device_id: str) -> None:
    """Every topic built from valid names (district not 'alerts') parses back to them."""
    if district == "alerts":
        return
    info = parse_topic(f"city/{district}/{asset_type}/{device_id}/telemetry", "city")
    assert (info.district, info.asset_type, info.device_id) == (district, asset_type, device_id)
