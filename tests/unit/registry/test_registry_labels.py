"""Device labels for rules' ``match.labels``: scalar metadata as text, following provisioning."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.clock import FakeClock
from hub.messages import Reading
from hub.registry.registry import Registry
from hub.sqlite import connect


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "hub.db")
    yield conn
    conn.close()


def make(conn: sqlite3.Connection) -> Registry:
    return Registry(conn, clock=FakeClock(), expected_interval_s={"flood_gauge": 60.0}.get)


def test_labels_are_scalar_metadata_as_text(db: sqlite3.Connection) -> None:
    """Strings, numbers and booleans become labels; nested values and unknown devices have none."""
    reg = make(db)
    reg.upsert_device(
        "fg-1",
        "d01",
        "flood_gauge",
        None,
        None,
        {"criticality": "high", "zone": 3, "tidal": True, "owner": {"team": "x"}},
    )
    assert dict(reg.labels("fg-1")) == {"criticality": "high", "zone": "3", "tidal": "true"}
    assert dict(reg.labels("nobody")) == {}


def test_auto_registered_device_has_no_labels(db: sqlite3.Connection) -> None:
    """A device known only from its readings has no labels."""
    reg = make(db)
    reg.apply_readings([Reading("d01", "flood_gauge", "fg-2", 1, {"water_level_m": 1.0})])
    assert dict(reg.labels("fg-2")) == {}


def test_generation_moves_with_provisioning_and_labels_follow(db: sqlite3.Connection) -> None:
    """Re-provisioning bumps the generation and replaces the labels; a restart reloads them."""
    reg = make(db)
    g0 = reg.generation
    reg.upsert_device("fg-1", "d01", "flood_gauge", None, None, {"criticality": "high"})
    g1 = reg.generation
    assert g1 != g0
    reg.upsert_device("fg-1", "d01", "flood_gauge", None, None, {"criticality": "low"})
    assert reg.generation != g1
    assert dict(reg.labels("fg-1")) == {"criticality": "low"}
    assert dict(make(db).labels("fg-1")) == {"criticality": "low"}


def test_provisioning_by_another_process_is_seen_at_tick(db: sqlite3.Connection) -> None:
    """Labels written by `hub devices import` (another connection) arrive with the next tick."""
    reg = make(db)
    other = make(db)
    before = reg.generation
    other.upsert_device("fg-9", "d02", "flood_gauge", None, None, {"criticality": "high"})
    assert dict(reg.labels("fg-9")) == {}
    reg.tick(0)
    assert reg.generation != before
    assert dict(reg.labels("fg-9")) == {"criticality": "high"}
