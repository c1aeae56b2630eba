"""deploy/compose/docker-compose.yml checked statically (no Docker daemon needed).

Every file it builds from or mounts exists (or is written by prepare.sh), the hub's
environment names real settings (CONTRACT §5) and loads with the production
config, and the ports and paths agree with deploy/mosquitto and the hub's image.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel
from ruamel.yaml import YAML

from hub.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
#: Written by prepare.sh before `docker compose up`, so not in the repository.
GENERATED = "./secrets/"
#: InfluxDB 1.x's HTTP port inside its official image.
INFLUX_PORT = 8086


def _interpolate(text: str) -> str:
    """Compose's ${VAR}, ${VAR:?msg} and ${VAR:-default} with a stand-in value."""
    return re.sub(r"\$\{([A-Z0-9_]+)[^}]*\}", lambda m: f"x-{m.group(1).lower()}", text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = YAML(typ="safe").load(_interpolate(COMPOSE.read_text(encoding="utf-8")))
    assert isinstance(loaded, dict)
    return loaded


def _binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of each bind mount (named volumes left out)."""
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def _targets(service: dict[str, Any]) -> set[str]:
    return {volume.split(":")[1] for volume in service.get("volumes", [])}


def _container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(mapping).rsplit(":", 1)[1]) for mapping in service.get("ports", [])}


def _mosquitto_conf() -> dict[str, list[str]]:
    conf: dict[str, list[str]] = {}
    for line in (REPO / "deploy" / "mosquitto" / "production.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            conf.setdefault(key, []).append(value.strip())
    return conf


def _hub_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    hub = compose["services"]["hub"]
    for name in [n for n in os.environ if n.startswith("HUB_")]:
        monkeypatch.delenv(name)
    for name, value in hub["environment"].items():
        monkeypatch.setenv(name, str(value))
    config = PurePosixPath(_hub_config_path())
    mounted = {target: source for source, target in _binds(hub)}
    return load_settings(COMPOSE_DIR / mounted[str(config)])


def _hub_config_path() -> str:
    """The --config path of the image's CMD."""
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None, "the Dockerfile has no exec-form CMD"
    args: list[str] = YAML(typ="safe").load(cmd.group(1))
    return args[args.index("--config") + 1]


def test_every_mounted_and_built_file_exists(compose: dict[str, Any]) -> None:
    """Bind mounts and the build's Dockerfile/COPY sources exist, or prepare.sh writes them."""
    prepare = (COMPOSE_DIR / "prepare.sh").read_text()
    for name, service in compose["services"].items():
        for source, _target in _binds(service):
            if source.startswith(GENERATED):
                # prepare.sh creates the directory (mkdir -p) or the file (openssl -out).
                assert source.removeprefix("./") in prepare, f"{name}: nothing writes {source}"
            else:
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} is not in the repository"
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            dockerfile = context / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: no {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for source in shlex.split(line)[1:-1]:
                        assert (context / source).exists(), f"{name}: COPY {source} missing"


def _field_exists(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    inner = field.annotation
    return (
        isinstance(inner, type) and issubclass(inner, BaseModel) and _field_exists(inner, path[1:])
    )


def test_hub_environment_names_real_settings(compose: dict[str, Any]) -> None:
    """Each HUB_* variable of the hub service is a field of hub/settings.py (CONTRACT §5)."""
    names = list(compose["services"]["hub"]["environment"])
    assert names
    for name in names:
        assert name.startswith("HUB_"), name
        path = name.removeprefix("HUB_").lower().split("__")
        assert _field_exists(Settings, path), f"{name} is not a setting"


def test_hub_settings_load_and_agree_with_the_other_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's settings (image CMD config + compose env) point at the broker and InfluxDB."""
    settings = _hub_settings(compose, monkeypatch)
    services = compose["services"]
    hub = services["hub"]
    mqtt = urlsplit(settings.mqtt.url)
    assert (mqtt.scheme, mqtt.hostname, mqtt.username) == ("mqtts", "mosquitto", "hub")
    listeners = [int(v.split()[0]) for v in _mosquitto_conf()["listener"]]
    assert mqtt.port in listeners
    assert settings.mqtt.ca_file is not None
    assert str(settings.mqtt.ca_file) in _targets(hub)
    influx = urlsplit(settings.influx.url)
    assert (influx.hostname, influx.port) == ("influxdb", INFLUX_PORT)
    assert settings.influx.database == services["influxdb"]["environment"]["INFLUXDB_DB"]
    assert settings.influx.username == services["influxdb"]["environment"]["INFLUXDB_USER"]
    assert settings.store.backend == "influxdb"
    # The API listens on all of the container's interfaces, on the published port.
    assert settings.api.host == "0.0.0.0"
    assert _container_ports(hub) == {settings.api.port}
    # Rules, routes and state live where the container mounts them.
    targets = _targets(hub)
    assert all(str(path) in targets for path in settings.rules.paths)
    assert settings.alerts.routes_path
    routes = PurePosixPath(settings.alerts.routes_path)
    rules_source = {t: s for s, t in _binds(hub)}[str(routes.parent)]
    assert (COMPOSE_DIR / rules_source / routes.name).is_file()
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert f"HUB_DATA_DIR={settings.data_dir}" in dockerfile
    assert str(settings.data_dir) in targets


def test_mosquitto_service_agrees_with_production_conf(compose: dict[str, Any]) -> None:
    """Published port = the conf's listener; the entrypoint puts each file the conf names there."""
    broker = compose["services"]["mosquitto"]
    conf = _mosquitto_conf()
    listeners = {int(v.split()[0]) for v in conf["listener"]}
    assert _container_ports(broker) <= listeners
    assert conf["persistence_location"][0].rstrip("/") in {t.rstrip("/") for t in _targets(broker)}
    entrypoint = " ".join(broker["entrypoint"])
    config_target = re.search(r"mosquitto -c (\S+)", entrypoint)
    assert config_target is not None
    mounted = {t: s for s, t in _binds(broker)}
    assert mounted[config_target.group(1)].endswith("mosquitto/production.conf")
    for key in ("certfile", "keyfile", "cafile", "password_file", "acl_file"):
        path = PurePosixPath(conf[key][0])
        # Copied by name into the conf's directory by the entrypoint.
        copies = [c for c in entrypoint.split("&&") if c.strip().startswith("cp ")]
        assert any(
            path.name in c and c.split()[-1].rstrip("/") == str(path.parent) for c in copies
        ), f"nothing puts {path} in place"
