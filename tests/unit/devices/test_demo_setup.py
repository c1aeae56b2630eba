"""`hub demo`'s set-up steps: provisioning the fleet into the registry, the admin key,
the rules it loads and the ports it takes."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.demo import (
    DEMO_KEY_NAME,
    MANAGED_RULES_DIR,
    demo_key,
    provision,
    with_free_ports,
    with_rules,
)
from devices.simulator import build_fleet
from hub.api.keys import list_keys, verify_key
from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.listen import port_free
from hub.packaged import rule_packs_dir
from hub.ports import UNRESTRICTED, DeviceFilter
from hub.registry.registry import Registry
from hub.settings import Settings, load_settings
from hub.sqlite import connect


def _registry(path: Path) -> Registry:
    return Registry(
        connect(path), clock=FakeClock(), expected_interval_s=load_catalog().expected_interval_s
    )


def test_provision_registers_every_device_with_its_location_once(tmp_path: Path) -> None:
    """First start provisions all devices with their places; a restart leaves edits alone."""
    fleet = build_fleet(320, 8)
    registry = _registry(tmp_path / "hub.db")
    assert provision(registry, fleet) == 320
    devices = registry.list_devices(DeviceFilter(limit=1000), UNRESTRICTED)
    assert len(devices) == 320
    assert all(d.provisioned for d in devices)
    info = registry.get_device("fg-d03-001")
    spec = next(s for s in fleet if s.device_id == "fg-d03-001")
    assert info is not None
    assert (info.district, info.asset_type) == ("d03", "flood_gauge")
    assert (info.latitude, info.longitude) == (spec.latitude, spec.longitude)
    assert info.metadata["simulated"] is True
    # An operator moves a device; the next start must not move it back.
    registry.upsert_device("fg-d03-001", "d03", "flood_gauge", 51.0, 7.0, {"note": "moved"})
    registry.flush()
    again = _registry(tmp_path / "hub.db")
    assert provision(again, fleet) == 0
    moved = again.get_device("fg-d03-001")
    assert moved is not None
    assert (moved.latitude, moved.longitude) == (51.0, 7.0)


def test_demo_key_is_admin_and_replaces_the_previous_one(tmp_path: Path) -> None:
    """Each start prints a working admin key; the previous demo key stops working."""
    conn = connect(tmp_path / "hub.db")
    first = demo_key(conn)
    found = verify_key(conn, first)
    assert found is not None
    assert found.role == "admin"
    assert found.name == DEMO_KEY_NAME
    second = demo_key(conn)
    assert verify_key(conn, second) is not None
    assert verify_key(conn, first) is None
    active = [k for k in list_keys(conn, include_revoked=False) if k.name == DEMO_KEY_NAME]
    assert len(active) == 1


@pytest.fixture
def _no_hub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HUB_* variable of the environment running the tests."""
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)


@pytest.mark.usefixtures("_no_hub_env")
def test_demo_outside_the_checkout_loads_the_shipped_rules_and_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a folder without rules/, the demo runs on the rule packs and routes shipped
    with the hub, keeps rules made through the API in its data dir, and says so."""
    monkeypatch.chdir(tmp_path)
    packs = rule_packs_dir()
    assert packs is not None
    settings, lines = with_rules(load_settings())
    assert settings.rules.paths == [str(packs)]
    assert settings.alerts.routes_path == str(packs / "routes.yaml")
    assert settings.rules.managed_dir == str(tmp_path / "var" / MANAGED_RULES_DIR)
    assert lines == [
        f"{packs} (shipped with the hub; rules not found)",
        f"{packs / 'routes.yaml'} (shipped with the hub; rules/routes.yaml not found)",
    ]
    assert not (tmp_path / "rules").exists()


@pytest.mark.usefixtures("_no_hub_env")
def test_demo_keeps_the_rules_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured rule paths and routes that exist are used as they are; an explicit
    managed-rules folder is kept even when the shipped packs are used."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "routes.yaml").write_text("route: {receiver: mqtt}\n")
    monkeypatch.setenv("HUB_RULES__PATHS", "mine")
    monkeypatch.setenv("HUB_ALERTS__ROUTES_PATH", "mine/routes.yaml")
    settings, lines = with_rules(load_settings())
    assert settings.rules.paths == ["mine"]
    assert settings.alerts.routes_path == "mine/routes.yaml"
    assert lines == ["mine (HUB_RULES__PATHS)", "mine/routes.yaml (HUB_ALERTS__ROUTES_PATH)"]
    monkeypatch.setenv("HUB_RULES__PATHS", "missing")
    monkeypatch.setenv("HUB_RULES__MANAGED_DIR", "/srv/hub/managed")
    settings, _ = with_rules(load_settings())
    assert settings.rules.paths == [str(rule_packs_dir())]
    assert settings.rules.managed_dir == "/srv/hub/managed"


@pytest.fixture
def two_taken_ports() -> Iterator[tuple[int, int]]:
    """Two loopback ports another program listens on."""
    with socket.socket() as a, socket.socket() as b:
        for sock in (a, b):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        yield a.getsockname()[1], b.getsockname()[1]


def test_demo_moves_taken_ports_to_free_ones_and_says_so(two_taken_ports: tuple[int, int]) -> None:
    """The broker's and the API's ports taken: the demo takes the next free ones and
    prints a line naming each taken port, the one taken instead and the setting."""
    broker, api = two_taken_ports
    settings = Settings(
        mqtt={"embedded_listen": f"127.0.0.1:{broker}"}, api={"host": "127.0.0.1", "port": api}
    )
    moved, notes = with_free_ports(settings)
    new_broker = moved.mqtt.embedded_host_port()[1]
    assert new_broker != broker
    assert moved.api.port not in (api, new_broker)
    assert port_free("127.0.0.1", new_broker)
    assert port_free("127.0.0.1", moved.api.port)
    assert notes == [
        f"127.0.0.1:{broker} is in use by another program; the demo's MQTT broker listens "
        f"on 127.0.0.1:{new_broker} instead (HUB_MQTT__EMBEDDED_LISTEN)",
        f"127.0.0.1:{api} is in use by another program; the console and API listen on "
        f"127.0.0.1:{moved.api.port} instead (HUB_API__PORT)",
    ]


def test_demo_leaves_free_ports_and_external_brokers_alone() -> None:
    """Free ports (or port 0) and an external broker (HUB_MQTT__URL) are not touched."""
    settings = Settings(mqtt={"embedded_listen": "127.0.0.1:0"}, api={"port": 0})
    assert with_free_ports(settings) == (settings, [])
    external = Settings(mqtt={"url": "mqtt://127.0.0.1:1"}, api={"port": 0})
    assert with_free_ports(external) == (external, [])
