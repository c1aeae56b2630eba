"""Redaction (hub.redact): URL passwords, API keys and credential parameters, in logs too."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import logging as hub_logging
from hub.redact import MASK, is_credential_name, redact_query, redact_text, redact_url
from hub.settings import LogSettings

API_KEY = "hub_1a2b3c4d_" + "Zx9-_" * 8 + "abc"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://hub:s3cret@broker:1883", "mqtt://hub:***@broker:1883"),
        ("mqtts://hub:p%40ss%3Aw%2Frd@broker", "mqtts://hub:***@broker"),
        ("mqtt://hub:p@ss@broker:1883", "mqtt://hub:***@broker:1883"),
        ("mqtt://:only-password@broker", "mqtt://:***@broker"),
        ("http://influx:8086/write?db=x", "http://influx:8086/write?db=x"),
        ("mqtt://user-only@broker:1883", "mqtt://user-only@broker:1883"),
        ("", ""),
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    """The password of a URL's user information is masked; user, host and port stay."""
    assert redact_url(url) == shown


def test_redact_text_catches_urls_keys_and_parameters_in_free_text() -> None:
    """A log line or error message keeps its sense and loses every secret in it."""
    line = (
        f"broker unreachable url=mqtt://hub:s3cret@10.0.0.5:1883 key {API_KEY} "
        "GET /x?district=d01&access_token=abc123 password=hunter2 key_id=1a2b3c4d"
    )
    out = redact_text(line)
    for secret in ("s3cret", API_KEY[13:], "abc123", "hunter2"):
        assert secret not in out
    assert "mqtt://hub:***@10.0.0.5:1883" in out
    assert "hub_1a2b3c4d_***" in out  # the key's public id still says which key
    assert "district=d01&access_token=***" in out
    assert "key_id=1a2b3c4d" in out  # an id is not a credential


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("district=d07", "district=d07"),
        ("access_token=hub_x&district=d07", f"access_token={MASK}&district=d07"),
        ("limit=5&Api-Key=k&TOKEN=t", f"limit=5&Api-Key={MASK}&TOKEN={MASK}"),
        (
            "x_auth_token=9&db_password=p&secret=s",
            f"x_auth_token={MASK}&db_password={MASK}&secret={MASK}",
        ),
        ("password&key_id=1a2b3c4d", "password&key_id=1a2b3c4d"),
        ("", ""),
    ],
)
def test_redact_query_masks_credential_values_only(query: str, stored: str) -> None:
    """Credential-like parameters lose their values; the others stay exactly as sent."""
    assert redact_query(query) == stored


@given(st.text(max_size=200))
def test_redaction_never_raises_and_is_idempotent(text: str) -> None:
    """Any text (a payload quoted in a log) can be redacted, and twice is once."""
    once = redact_text(text)
    assert redact_text(once) == once
    assert redact_query(redact_query(text)) == redact_query(text)


def test_credential_names() -> None:
    """Names of credentials are recognised whatever their case or separator."""
    for name in ("token", "Access-Token", "api_key", "APIKEY", "client_secret", "x-auth-token"):
        assert is_credential_name(name), name
    for name in ("district", "key_id", "metric", "tokens_used", "start"):
        assert not is_credential_name(name), name


def test_every_log_line_is_redacted_whoever_logs_it(capsys: pytest.CaptureFixture[str]) -> None:
    """structlog fields, stdlib loggers (uvicorn, paho) and exception text are all redacted,
    and a traceback carries no local variables."""
    hub_logging.configure(LogSettings(level="INFO", format="console"))
    log = hub_logging.get_logger("tests.redact")
    log.info("hub started", mqtt="mqtt://hub:s3cret@broker:1883")
    logging.getLogger("uvicorn.error").warning("connect to mqtt://hub:s3cret@broker failed")
    password = "s3cret"  # a local variable a rich traceback would print
    try:
        raise ConnectionError(f"refused by mqtt://hub:{password}@broker:1883")
    except ConnectionError:
        log.exception("stage died")
    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert err.count("mqtt://hub:***@broker") >= 3  # field, stdlib line, exception
    assert "Traceback (most recent call last)" in err
    assert "locals" not in err
    assert "password =" not in err


def test_json_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON format is redacted as well."""
    hub_logging.configure(LogSettings(level="INFO", format="json"))
    hub_logging.get_logger("tests.redact").info("x", url=f"mqtt://a:s3cret@b:1 {API_KEY}")
    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert API_KEY not in err
    assert "mqtt://a:***@b:1" in err
