"""The settings the store writer process receives are the hub's, secrets included."""

from __future__ import annotations

from pathlib import Path

from hub.settings import Settings
from hub.store.writer import settings_frame, settings_from_frame


def test_the_child_gets_the_hubs_settings_secrets_included(tmp_path: Path) -> None:
    """Every setting crosses the pipe unchanged: paths, lists, literals and secrets
    (which a plain JSON dump would mask as '**********')."""
    settings = Settings(
        data_dir=tmp_path / "var",
        store={"backend": "influxdb", "writer": "process"},
        influx={
            "url": "http://127.0.0.1:8086",
            "api": "v2",
            "token": "t0k3n-for-the-child",
            "batch_size": 1234,
        },
        rules={"paths": ["rules", str(tmp_path / "more")]},
        log={"format": "json"},
    )
    again = settings_from_frame(settings_frame(settings))
    assert again == settings
    assert again.influx.token is not None
    assert again.influx.token.get_secret_value() == "t0k3n-for-the-child"
    assert again.data_dir == tmp_path / "var"
