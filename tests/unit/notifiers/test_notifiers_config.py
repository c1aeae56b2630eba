"""Notifier construction and the pure parts: signatures, texts, config errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.clock import FakeClock
from hub.messages import Notification
from hub.notifiers.base import LogNotifier, render_text
from hub.notifiers.factory import NotifierConfigError, build_notifier
from hub.notifiers.mqtt import MqttNotifier, event_topic, state_topic
from hub.notifiers.webhook import WebhookNotifier, sign, verify


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=2048))
def test_signature_verifies_only_the_signed_body(secret: bytes, body: bytes) -> None:
    """sign/verify agree, and any change of the body breaks the signature."""
    header = sign(secret, body)
    assert header.startswith("sha256=")
    assert verify(secret, body, header)
    assert not verify(secret, body + b"x", header)


def test_known_signature_vector() -> None:
    """The header is the hex HMAC-SHA256 of the body (GitHub's scheme)."""
    assert sign(b"It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_topics_follow_the_contract() -> None:
    """Events on {prefix}/alerts/{district}/{source}; retained state one level below."""
    assert event_topic("city", "d07", "wm-1") == "city/alerts/d07/wm-1"
    assert state_topic("city", "d07", "_area") == "city/alerts/d07/_area/state"


def _build(kind: str, options: dict[str, object], **kw: object) -> object:
    return build_notifier(
        "r",
        kind,
        options,
        mqtt_url="mqtt://127.0.0.1:1",
        topic_prefix="city",
        clock=FakeClock(),
        environ=kw.pop("environ", {}),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_webhook_needs_a_secret() -> None:
    """A webhook without any secret, or with an unset secret_env, is a config error."""
    with pytest.raises(NotifierConfigError, match="needs a secret"):
        _build("webhook", {"url": "http://127.0.0.1:9/x"})
    with pytest.raises(NotifierConfigError, match="HOOK_KEY is not set"):
        _build("webhook", {"url": "http://127.0.0.1:9/x", "secret_env": "HOOK_KEY"})
    ok = _build(
        "webhook",
        {"url": "http://127.0.0.1:9/x", "secret_env": "HOOK_KEY"},
        environ={"HOOK_KEY": "k"},
    )
    assert isinstance(ok, WebhookNotifier)
    fallback = _build("webhook", {"url": "http://127.0.0.1:9/x"}, default_secret="s3cr3t-value")
    assert isinstance(fallback, WebhookNotifier)


def test_bad_channels_are_config_errors() -> None:
    """Unparsable Apprise URLs, bad MQTT URLs and unknown kinds are config errors."""
    with pytest.raises(NotifierConfigError, match="cannot parse"):
        _build("apprise", {"urls": ["definitely not a url"]})
    with pytest.raises(NotifierConfigError, match="mqtt://"):
        build_notifier("m", "mqtt", {}, mqtt_url="http://x", topic_prefix="city", clock=FakeClock())
    with pytest.raises(NotifierConfigError, match="unknown channel"):
        _build("pigeon", {})
    assert isinstance(_build("mqtt", {}), MqttNotifier)
    assert isinstance(_build("log", {"level": "info"}), LogNotifier)


def test_render_text_mentions_what_a_person_needs() -> None:
    """Chat/SMS/email text names severity, rule, place, kind and escalation step."""
    n = Notification(
        notification_id="n1",
        receiver="sms",
        alert_id="a1",
        payload={
            "kind": "escalation",
            "escalation_step": 2,
            "alert": {
                "id": "a1",
                "severity": "emergency",
                "rule_id": "gas-high",
                "district": "d03",
                "source": "mh-9",
                "summary": "methane 40 %LEL",
                "status": "firing",
                "asset_type": "manhole",
            },
            "incident": {"id": "inc-1", "open_alerts": 3},
        },
        created_ms=0,
    )
    title, body = render_text(n)
    assert title == "[EMERGENCY] gas-high at d03/mh-9 (escalation)"
    assert "methane 40 %LEL" in body
    assert "ESCALATION step 2" in body
    assert "inc-1" in body
