"""API keys: format, hashing, verification, revocation, scopes and the `hub keys` command."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.api.keys import (
    KeyRefused,
    create_key,
    ensure_schema,
    list_keys,
    parse_scope_args,
    revoke_key,
    verify_key,
)
from hub.cli import main
from hub.sqlite import STATE_DB, connect


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    connection = connect(tmp_path / STATE_DB)
    ensure_schema(connection)
    return connection


def test_key_is_shown_once_and_stored_hashed(conn: sqlite3.Connection) -> None:
    """The plaintext key never appears in the database; only its id and a hash do."""
    key = create_key(conn, role="operator", name="ops")
    prefix, key_id, secret = key.split("_", 2)
    assert prefix == "hub"
    assert len(key_id) == 8
    assert len(secret) == 43
    dump = "\n".join(conn.iterdump())
    assert secret not in dump
    assert key_id in dump


def test_verify_returns_role_and_scope(conn: sqlite3.Connection) -> None:
    """A valid key verifies to its role and normalised scope."""
    key = create_key(
        conn,
        role="viewer",
        name="water",
        scopes={"district": ["d07", "d03"], "asset_types": ["manhole"]},
    )
    found = verify_key(conn, key)
    assert found is not None
    assert found.role == "viewer"
    assert found.scope.districts == frozenset({"d03", "d07"})
    assert found.scope.asset_types == frozenset({"manhole"})
    assert found.scopes_dict() == {"districts": ["d03", "d07"], "asset_types": ["manhole"]}


def test_a_second_active_key_of_the_same_name_is_refused(conn: sqlite3.Connection) -> None:
    """Names tell keys apart: one active key per name; a revoked key's name is free again."""
    first = create_key(conn, role="viewer", name="dashboard-ops")
    with pytest.raises(KeyRefused, match="already named 'dashboard-ops'") as caught:
        create_key(conn, role="admin", name=" dashboard-ops ")
    assert first.split("_")[1] in str(caught.value)  # names the key in the way
    assert len(list_keys(conn)) == 1
    revoke_key(conn, "dashboard-ops")
    second = create_key(conn, role="admin", name="dashboard-ops")
    assert [k.active for k in list_keys(conn)] == [False, True]
    assert verify_key(conn, second) is not None


def test_revoke_by_name_or_id_and_ambiguity(conn: sqlite3.Connection) -> None:
    """Revoke works by id or unique name; an ambiguous name (two active keys of one name,
    left by a version that allowed it) is refused, naming the ids."""
    a = create_key(conn, role="viewer", name="twin")
    b = create_key(conn, role="viewer", name="twin-b")
    conn.execute("UPDATE api_keys SET name = 'twin' WHERE name = 'twin-b'")
    with pytest.raises(KeyRefused, match="revoke by id"):
        revoke_key(conn, "twin")
    revoke_key(conn, a.split("_")[1])
    assert verify_key(conn, a) is None
    revoke_key(conn, "twin")
    assert verify_key(conn, b) is None
    with pytest.raises(KeyRefused, match="no active key"):
        revoke_key(conn, "twin")
    assert [k.active for k in list_keys(conn)] == [False, False]


@pytest.mark.parametrize(
    ("role", "scopes"),
    [("root", None), ("viewer", {"city": ["x"]}), ("viewer", {"district": ["D 07"]})],
)
def test_bad_roles_and_scopes_are_refused(
    conn: sqlite3.Connection, role: str, scopes: dict[str, list[str]] | None
) -> None:
    """Unknown roles, scope kinds and invalid names are refused with a clear message."""
    with pytest.raises(KeyRefused):
        create_key(conn, role=role, name="x", scopes=scopes)


def test_parse_scope_args_accepts_cli_forms() -> None:
    """`--scope district=d01,d02 --scope asset_type=manhole` parses to plural kinds."""
    assert parse_scope_args(["district=d01,d02", "asset_type=manhole"]) == {
        "districts": ["d01", "d02"],
        "asset_types": ["manhole"],
    }
    with pytest.raises(KeyRefused):
        parse_scope_args(["d01"])


@given(st.text(max_size=120))
def test_verify_never_raises_on_arbitrary_input(text: str) -> None:
    """Whatever a client sends as a key, verification answers None rather than raising."""
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    ensure_schema(conn)
    assert verify_key(conn, text) is None


def test_cli_create_list_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub keys create` prints the key as its last word; list hides secrets; revoke disables it."""
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    assert (
        main(["keys", "create", "--role", "operator", "--name", "night", "--scope", "district=d07"])
        == 0
    )
    key = capsys.readouterr().out.split()[-1]
    conn = connect(tmp_path / STATE_DB)
    found = verify_key(conn, key)
    assert found is not None
    assert found.scope.districts == frozenset({"d07"})
    # The same name again, while the first key is active: refused, non-zero, nothing made.
    assert main(["keys", "create", "--role", "admin", "--name", "night"]) == 2
    refused = capsys.readouterr()
    assert "already named 'night'" in refused.err
    assert refused.out == ""
    assert len(list_keys(conn)) == 1
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "night" in listing
    assert "districts=d07" in listing
    assert key.split("_", 2)[2] not in listing
    assert main(["keys", "revoke", "night"]) == 0
    assert verify_key(conn, key) is None
    assert main(["keys", "revoke", "night"]) == 2
    assert "no active key" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "viewer", "--name", "x", "--scope", "nope"]) == 2


def test_last_used_is_recorded_at_most_once_a_minute(tmp_path: Path) -> None:
    """Using a key stamps last_used_ms, but not on every request (one write a minute at most)."""
    from tests.unit.api.conftest import NOW_MS, make_api

    for api in make_api(tmp_path):
        viewer = next(k for k in list_keys(api.ctx.conn) if k.name == "viewer-key")
        assert viewer.last_used_ms is None
        api.client.get("/api/v1/devices", headers=api.auth("viewer"))
        api.clock.advance(30)
        api.client.get("/api/v1/devices", headers=api.auth("viewer"))
        stamped = next(k for k in list_keys(api.ctx.conn) if k.name == "viewer-key")
        assert stamped.last_used_ms == NOW_MS
        api.clock.advance(31)
        api.client.get("/api/v1/devices", headers=api.auth("viewer"))
        later = next(k for k in list_keys(api.ctx.conn) if k.name == "viewer-key")
        assert later.last_used_ms == NOW_MS + 61_000
