"""HUB_OPEN_DATA__* settings: read from the environment, refused when they make no sense."""

from __future__ import annotations

import pytest

from hub.settings import ConfigError, load_settings


def test_open_data_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every open-data setting has a HUB_OPEN_DATA__ variable; a base URL loses its slash."""
    monkeypatch.setenv("HUB_OPEN_DATA__BASE_URL", "https://data.city.example/")
    monkeypatch.setenv("HUB_OPEN_DATA__RATE_PER_S", "2.5")
    monkeypatch.setenv("HUB_OPEN_DATA__ENABLED", "false")
    settings = load_settings().open_data
    assert settings.base_url == "https://data.city.example"
    assert settings.rate_per_s == 2.5
    assert settings.enabled is False
    assert settings.license_url == "https://creativecommons.org/licenses/by/4.0/"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HUB_OPEN_DATA__BASE_URL", "ftp://data.city.example", "http(s) address"),
        ("HUB_OPEN_DATA__LICENSE_URL", "https://x.example/?a=1", "without a query"),
        ("HUB_OPEN_DATA__LICENSE_ID", "CC BY 4.0", "should match"),
        ("HUB_OPEN_DATA__DEFAULT_PAGE", "5000", "default_page must not be above max_page"),
        ("HUB_OPEN_DATA__RATE_PER_S", "0", "greater than 0"),
        ("HUB_OPEN_DATA__MAX_CONCURRENT_QUERIES", "0", "greater than or equal to 1"),
    ],
)
def test_open_data_settings_that_make_no_sense_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    """A wrong value says what is wrong and where (its variable, or the open_data section
    for a relation between two), and the hub does not start."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert says in message
    assert variable in message or "open_data:" in message
