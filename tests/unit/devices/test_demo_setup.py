"""`hub demo`'s set-up steps: provisioning the fleet into the registry, the admin key."""

from __future__ import annotations

from pathlib import Path

from devices.demo import DEMO_KEY_NAME, demo_key, provision
from devices.simulator import build_fleet
from hub.api.keys import list_keys, verify_key
from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.ports import UNRESTRICTED, DeviceFilter
from hub.registry.registry import Registry
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
