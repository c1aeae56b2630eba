"""Audit log: who read non-public data or changed anything, what, when, with what result.

One row per request in the state DB (component ``audit``). Rows are only ever
appended; admins read them through ``GET /api/v1/audit``. The query string is kept
as sent, less the values of credential-like parameters (``access_token=``,
``password=``…, :func:`hub.redact.redact_query`): a key pasted into a URL by mistake
is not kept in a log that outlives it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from hub.redact import redact_query
from hub.sqlite import migrate

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        key_id TEXT,
        key_name TEXT,
        role TEXT,
        client TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        query TEXT NOT NULL,
        status INTEGER NOT NULL,
        rows INTEGER
    );
    CREATE INDEX audit_log_ts ON audit_log (ts_ms);
    CREATE INDEX audit_log_key ON audit_log (key_id, ts_ms);
    """,
)

#: Query strings are kept up to this many characters (they are bounded by the API anyway).
MAX_QUERY_CHARS = 2000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited request. ``key_id`` is None when no valid key was presented."""

    ts_ms: int
    key_id: str | None
    key_name: str | None
    role: str | None
    client: str
    method: str
    path: str
    query: str
    status: int
    rows: int | None
    id: int = 0


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the audit table."""
    migrate(conn, "audit", MIGRATIONS)


def record(conn: sqlite3.Connection, entry: AuditEntry) -> None:
    """Append ``entry``, its query string redacted."""
    conn.execute(
        "INSERT INTO audit_log (ts_ms, key_id, key_name, role, client, method, path, query,"
        " status, rows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.ts_ms,
            entry.key_id,
            entry.key_name,
            entry.role,
            entry.client,
            entry.method,
            entry.path,
            redact_query(entry.query)[:MAX_QUERY_CHARS],
            entry.status,
            entry.rows,
        ),
    )


def entries(
    conn: sqlite3.Connection,
    *,
    limit: int,
    key_id: str | None = None,
    since_ms: int | None = None,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """Entries newest first, optionally for one key, since a time, or before an id (paging)."""
    where: list[str] = []
    params: list[object] = []
    if key_id is not None:
        where.append("key_id = ?")
        params.append(key_id)
    if since_ms is not None:
        where.append("ts_ms >= ?")
        params.append(since_ms)
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    sql = "SELECT * FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [
        AuditEntry(
            id=row["id"],
            ts_ms=row["ts_ms"],
            key_id=row["key_id"],
            key_name=row["key_name"],
            role=row["role"],
            client=row["client"],
            method=row["method"],
            path=row["path"],
            query=row["query"],
            status=row["status"],
            rows=row["rows"],
        )
        for row in conn.execute(sql, params)
    ]
