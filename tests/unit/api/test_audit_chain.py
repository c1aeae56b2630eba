"""The audit log is tamper-evident: `hub audit verify` finds a changed, a deleted or an
inserted entry, and entries cut from the end; retention prunes are audited and keep
the chain verifiable; the report says who read or changed what."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.api.audit import (
    AuditEntry,
    chain_key,
    ensure_schema,
    note_retention,
    prune,
    record,
    report,
    verify,
)
from hub.cli import main
from hub.sqlite import STATE_DB, connect
from tests.unit.api.conftest import NOW_MS, Api

KEY = b"k" * 32
DAY = 86_400_000


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A state database with ten audited requests, one a minute."""
    c = connect(tmp_path / STATE_DB)
    ensure_schema(c)
    for i in range(10):
        record(c, entry(NOW_MS + i * 60_000, f"/api/v1/devices/fg-{i}", key="a1b2c3d4"), KEY)
    yield c
    c.close()


def entry(
    ts: int,
    path: str,
    *,
    key: str | None = "a1b2c3d4",
    method: str = "GET",
    status: int = 200,
    district: str | None = "d01",
) -> AuditEntry:
    return AuditEntry(
        ts,
        key,
        "ops" if key else None,
        "viewer" if key else None,
        "10.0.0.1",
        method,
        path,
        "",
        status,
        1,
        district=district,
    )


def test_an_untouched_log_verifies(conn: sqlite3.Connection) -> None:
    """Ten chained entries: intact, with the last as the head."""
    found = verify(conn, KEY)
    assert found.ok, found.problems
    assert (found.checked, found.head_id) == (10, 10)


def test_a_changed_entry_is_found(conn: sqlite3.Connection) -> None:
    """Someone rewrites who made a request: that entry fails its hash."""
    conn.execute("UPDATE audit_log SET key_name = 'nobody' WHERE id = 4")
    found = verify(conn, KEY)
    assert found.problems == ["entry 4 was changed after it was written"]


def test_a_deleted_entry_is_found(conn: sqlite3.Connection) -> None:
    """Someone deletes a request: its successor no longer follows its predecessor."""
    conn.execute("DELETE FROM audit_log WHERE id = 6")
    [problem] = verify(conn, KEY).problems
    assert problem.startswith("entry 7 does not follow entry 5")
    assert "entries 6-6 are missing" in problem


def test_a_rehashed_forgery_without_the_key_is_found(conn: sqlite3.Connection) -> None:
    """Rebuilding the chain with another key (the attacker's) fails every entry."""
    other = b"x" * 32
    conn.execute("DELETE FROM audit_log")
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'audit_log'")
    for i in range(3):
        record(conn, entry(NOW_MS + i, "/api/v1/devices"), other)
    assert len(verify(conn, KEY).problems) == 3


def test_entries_cut_from_the_end_are_found_with_a_noted_head(conn: sqlite3.Connection) -> None:
    """A head noted earlier that is gone means the newest entries were deleted."""
    noted = verify(conn, KEY)
    assert noted.head_id is not None
    assert noted.head_hash is not None
    conn.execute("DELETE FROM audit_log WHERE id >= 9")
    assert verify(conn, KEY).ok  # a shorter chain is still a chain...
    found = verify(conn, KEY, head=(noted.head_id, noted.head_hash))
    assert found.problems == [  # ...but not the one noted
        "entry 10 noted earlier is gone or changed: entries were deleted from the end of the log"
    ]


def test_an_entry_deleted_at_the_start_is_found(conn: sqlite3.Connection) -> None:
    """Deleting the oldest entries without a retention prune breaks the chain's start."""
    conn.execute("DELETE FROM audit_log WHERE id <= 2")
    [problem] = verify(conn, KEY).problems
    assert "entry 3 is the first kept entry" in problem


def test_retention_prunes_and_says_so_and_the_chain_still_verifies(
    conn: sqlite3.Connection,
) -> None:
    """Entries older than the retention go; the prune is an entry naming where the chain
    now starts; verify accepts that start, and a later deletion is still found."""
    removed = prune(conn, KEY, NOW_MS + 5 * 60_000 + 1 + 30 * DAY, retention_days=30)
    assert removed == 6
    last = conn.execute("SELECT * FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    assert (last["method"], last["path"], last["rows"]) == ("PRUNE", "audit:retention", 6)
    assert "through_id=6" in last["query"]
    assert verify(conn, KEY).ok
    conn.execute("DELETE FROM audit_log WHERE id = 8")
    assert not verify(conn, KEY).ok


def test_a_forged_prune_start_is_found(conn: sqlite3.Connection) -> None:
    """Deleting old entries and moving the chain's start by hand, with no prune entry, is found."""
    row = conn.execute("SELECT hash FROM audit_log WHERE id = 3").fetchone()
    conn.execute("DELETE FROM audit_log WHERE id <= 3")
    conn.execute("UPDATE audit_chain SET first_id = 4, prev_hash = ?", (row["hash"],))
    assert verify(conn, KEY).problems == [
        "the chain starts at entry 4 but no retention prune entry says so"
    ]


def test_retention_changes_are_audited(conn: sqlite3.Connection) -> None:
    """The retention setting is recorded once, and again when it changes."""
    assert note_retention(conn, KEY, NOW_MS, 400) is True
    assert note_retention(conn, KEY, NOW_MS, 400) is False
    assert note_retention(conn, KEY, NOW_MS, 90) is True
    rows = conn.execute(
        "SELECT query FROM audit_log WHERE method = 'CONFIG' ORDER BY id"
    ).fetchall()
    assert [r["query"] for r in rows] == ["retention_days=400", "retention_days=90&previous=400"]
    assert verify(conn, KEY).ok


def test_the_key_file_is_private_and_stable(tmp_path: Path) -> None:
    """Without a configured key a 0600 key file is made once and then reused."""
    a = chain_key(None, tmp_path)
    assert chain_key(None, tmp_path) == a
    assert oct(os.stat(tmp_path / "audit.key").st_mode & 0o777) == "0o600"
    assert chain_key("a configured secret!", tmp_path) != a


def test_report_groups_by_key_resource_district_and_action(conn: sqlite3.Connection) -> None:
    """Reads and changes per key, resource kind and district, per period, with refusals."""
    record(conn, entry(NOW_MS + 3, "/api/v1/rules", method="POST", district=None), KEY)
    record(conn, entry(NOW_MS + 4, "/api/v1/devices/fg-1/telemetry", status=403), KEY)
    rows = report(conn, [(NOW_MS, NOW_MS + DAY)])
    got = {(r.resource, r.district, r.action): (r.requests, r.refused) for r in rows}
    assert got == {
        ("devices", "d01", "read"): (10, 0),
        ("rules", None, "change"): (1, 0),
        ("telemetry", "d01", "read"): (1, 1),
    }


def test_hub_audit_verify_exits_1_on_tampering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub audit verify`: 0 with the head to note; 1 naming the changed entry."""
    for k in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    c = connect(tmp_path / STATE_DB)
    ensure_schema(c)
    key = chain_key(None, tmp_path)
    for i in range(3):
        record(c, entry(NOW_MS + i, "/api/v1/alerts"), key)
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 3 entries, chain intact; head 3:")
    head = out.split("head ")[1].strip()
    c.execute("UPDATE audit_log SET status = 500 WHERE id = 2")
    assert main(["audit", "verify"]) == 1
    assert "entry 2 was changed after it was written" in capsys.readouterr().out
    c.execute("UPDATE audit_log SET status = 200 WHERE id = 2")
    c.execute("DELETE FROM audit_log WHERE id = 3")
    assert main(["audit", "verify", "--head", head]) == 1
    assert "entry 3 noted earlier is gone" in capsys.readouterr().out
    c.close()


def test_requests_through_the_api_are_chained_with_their_district(api: Api) -> None:
    """Audited API requests carry their district (from the device) and resource kind, and
    the admin's report and CSV show them; a scoped key may not read the report."""
    api.client.get("/api/v1/devices/fg-d07-1", headers=api.auth("viewer"))
    api.client.get(
        "/api/v1/indicators/data_completeness_pct?district=d07", headers=api.auth("viewer")
    )
    key = chain_key(None, api.ctx.settings.data_dir)
    assert verify(api.ctx.conn, key).ok
    r = api.client.get("/api/v1/audit/report?start=-1d", headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    rows = {(x["key_name"], x["resource"], x["district"]): x["requests"] for x in r.json()["rows"]}
    assert rows[("viewer-key", "devices", "d07")] == 1
    assert rows[("viewer-key", "indicators", "d07")] == 1
    csv = api.client.get("/api/v1/audit/report?start=-1d&format=csv", headers=api.auth("admin"))
    assert csv.headers["content-type"].startswith("text/csv")
    assert (
        csv.text.splitlines()[0]
        == "period_start_ms,key_id,key_name,role,resource,district,action,requests,rows,refused,"
        "key_purpose,key_expires_ms,suppressed"
    )
    assert api.client.get("/api/v1/audit/report", headers=api.auth("d07")).status_code == 403
