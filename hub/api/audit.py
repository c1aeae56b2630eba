"""Audit log: who read non-public data or changed anything, what, when, with what result.

One row per request in the state DB (component ``audit``). Rows are only ever
appended; admins read them through ``GET /api/v1/audit`` and report on them through
``GET /api/v1/audit/report`` (per key, resource kind, district and period). The query
string is kept as sent, less the values of credential-like parameters
(``access_token=``, ``password=``…, :func:`hub.redact.redact_query`): a key pasted
into a URL by mistake is not kept in a log that outlives it.

**Tamper evidence.** Each entry carries ``hash = HMAC-SHA256(key, prev_hash ‖ entry)``
where ``prev_hash`` is the hash of the entry before it: changing an entry breaks its
own hash, deleting one breaks its successor's link, and ``hub audit verify`` finds
both. The key (``HUB_AUDIT__CHAIN_KEY``, or a key file in ``HUB_DATA_DIR``) is kept
out of the database, so whoever can write the database cannot rebuild a consistent
chain. Deleting the newest entries leaves a shorter but intact chain: ``hub audit
verify`` prints the head (id and hash) to note elsewhere, and ``--head ID:HASH`` checks
that a head noted earlier is still there.

**Retention** (``HUB_AUDIT__RETENTION_DAYS``) deletes the oldest entries; the prune is
an audit entry itself (method ``PRUNE``) naming the last entry deleted and its hash,
where the kept chain now starts. A change of the retention setting is an entry too
(method ``CONFIG``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import orjson

from hub.api.keys import ensure_schema as ensure_key_schema
from hub.opendata.state import publications
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
    # 2: the hash chain, and what the report groups by (resource kind, district).
    """
    ALTER TABLE audit_log ADD COLUMN resource TEXT;
    ALTER TABLE audit_log ADD COLUMN district TEXT;
    ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
    ALTER TABLE audit_log ADD COLUMN hash TEXT;
    CREATE TABLE audit_chain (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        first_id INTEGER,
        prev_hash TEXT,
        retention_days INTEGER
    );
    INSERT INTO audit_chain (id) VALUES (1)
    """,
)

#: Query strings are kept up to this many characters (they are bounded by the API anyway).
MAX_QUERY_CHARS = 2000
#: ``prev_hash`` of the first entry of a chain that was never pruned.
GENESIS = "0" * 64
#: The key file written under HUB_DATA_DIR when no HUB_AUDIT__CHAIN_KEY is set.
KEY_FILE = "audit.key"
#: Methods of entries the hub writes itself (not requests).
PRUNE = "PRUNE"
CONFIG = "CONFIG"
RETENTION_PATH = "audit:retention"
#: HTTP methods that only read.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    district: str | None = None
    resource: str = ""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the audit table (resource kinds filled in for older rows)."""
    migrate(conn, "audit", MIGRATIONS)
    old = conn.execute("SELECT id, path FROM audit_log WHERE resource IS NULL").fetchall()
    if old:
        conn.executemany(
            "UPDATE audit_log SET resource = ? WHERE id = ?",
            [(resource_of(r["path"]), r["id"]) for r in old],
        )


def resource_of(path: str) -> str:
    """The kind of resource a request path names: ``devices``, ``telemetry``, ``alerts``…"""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        parts = parts[2:]
        if not parts:
            return "api"
        if parts[0] == "devices" and len(parts) >= 3 and parts[2] == "telemetry":
            return "telemetry"
        return parts[0]
    return parts[0] if parts else "console"


def chain_key(secret: str | None, data_dir: Path) -> bytes:
    """The HMAC key of the chain: the configured secret, else the data dir's key file
    (created, mode 0600, on first use)."""
    if secret:
        return secret.encode()
    path = data_dir / KEY_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    return bytes.fromhex(key)


def _digest(key: bytes, entry_id: int, prev_hash: str, row: Sequence[object]) -> str:
    body = orjson.dumps([entry_id, prev_hash, *row])
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _fields(entry: AuditEntry, query: str) -> tuple[object, ...]:
    return (
        entry.ts_ms,
        entry.key_id,
        entry.key_name,
        entry.role,
        entry.client,
        entry.method,
        entry.path,
        query,
        entry.status,
        entry.rows,
        entry.district,
        entry.resource or resource_of(entry.path),
    )


def _head(conn: sqlite3.Connection) -> str:
    row = conn.execute(
        "SELECT hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is not None:
        return str(row[0])
    anchor = conn.execute("SELECT prev_hash FROM audit_chain WHERE id = 1").fetchone()
    return str(anchor[0]) if anchor is not None and anchor[0] else GENESIS


def _append(conn: sqlite3.Connection, entry: AuditEntry, key: bytes) -> int:
    """Insert and chain ``entry``; the caller holds the write transaction."""
    fields = _fields(entry, redact_query(entry.query)[:MAX_QUERY_CHARS])
    prev = _head(conn)
    cur = conn.execute(
        "INSERT INTO audit_log (ts_ms, key_id, key_name, role, client, method, path, query,"
        " status, rows, district, resource) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        fields,
    )
    entry_id = int(cur.lastrowid or 0)
    conn.execute(
        "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?",
        (prev, _digest(key, entry_id, prev, fields), entry_id),
    )
    return entry_id


class _Write:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def record(conn: sqlite3.Connection, entry: AuditEntry, key: bytes) -> int:
    """Append ``entry`` to the chain; returns its id."""
    with _Write(conn):
        return _append(conn, entry, key)


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
            district=row["district"],
            resource=row["resource"] or "",
        )
        for row in conn.execute(sql, params)
    ]


# ---------------------------------------------------------------------- retention


def _hub_entry(now_ms: int, method: str, query: str, rows: int | None) -> AuditEntry:
    return AuditEntry(
        ts_ms=now_ms,
        key_id=None,
        key_name="hub",
        role=None,
        client="hub",
        method=method,
        path=RETENTION_PATH,
        query=query,
        status=200,
        rows=rows,
        resource="audit",
    )


def note_retention(conn: sqlite3.Connection, key: bytes, now_ms: int, retention_days: int) -> bool:
    """Record the retention setting when it differs from the one recorded last (the
    first start records it too); returns True when an entry was written."""
    with _Write(conn):
        row = conn.execute("SELECT retention_days FROM audit_chain WHERE id = 1").fetchone()
        previous = row[0] if row is not None else None
        if previous == retention_days:
            return False
        query = f"retention_days={retention_days}"
        if previous is not None:
            query += f"&previous={previous}"
        _append(conn, _hub_entry(now_ms, CONFIG, query, None), key)
        conn.execute("UPDATE audit_chain SET retention_days = ? WHERE id = 1", (retention_days,))
        return True


def prune(conn: sqlite3.Connection, key: bytes, now_ms: int, retention_days: int) -> int:
    """Delete entries older than the retention, and say so in the log; returns how many."""
    cutoff = now_ms - retention_days * 86_400_000
    with _Write(conn):
        last = conn.execute(
            "SELECT id, hash FROM audit_log WHERE ts_ms < ? ORDER BY id DESC LIMIT 1", (cutoff,)
        ).fetchone()
        if last is None:
            return 0
        deleted = conn.execute("DELETE FROM audit_log WHERE id <= ?", (last["id"],)).rowcount
        anchor = last["hash"] or GENESIS
        conn.execute(
            "UPDATE audit_chain SET first_id = ?, prev_hash = ? WHERE id = 1",
            (last["id"] + 1, anchor),
        )
        query = f"before_ms={cutoff}&through_id={last['id']}&anchor={anchor}&deleted={deleted}"
        _append(conn, _hub_entry(now_ms, PRUNE, query, int(deleted)), key)
        return int(deleted)


# ---------------------------------------------------------------------- verify


@dataclass(slots=True)
class Verification:
    """What ``hub audit verify`` found."""

    checked: int = 0
    unchained: int = 0
    problems: list[str] = field(default_factory=list)
    head_id: int | None = None
    head_hash: str | None = None

    @property
    def ok(self) -> bool:
        """True when the chain is intact."""
        return not self.problems


def _rows(conn: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    last = 0
    while True:
        page = conn.execute(
            "SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT 5000", (last,)
        ).fetchall()
        if not page:
            return
        yield from page
        last = page[-1]["id"]


def verify(
    conn: sqlite3.Connection, key: bytes, *, head: tuple[int, str] | None = None
) -> Verification:
    """Check every entry's hash and link; with ``head`` (an id and hash noted earlier),
    that this entry is still there unchanged (deleting the newest entries is seen)."""
    out = Verification()
    anchor = conn.execute("SELECT first_id, prev_hash FROM audit_chain WHERE id = 1").fetchone()
    anchor_first = anchor["first_id"] if anchor is not None else None
    anchor_hash = anchor["prev_hash"] if anchor is not None else None
    prev_id: int | None = None
    prev_hash: str | None = None
    prunes: set[tuple[int, str]] = set()
    for row in _rows(conn):
        entry_id = int(row["id"])
        if row["hash"] is None:
            if prev_hash is not None:
                out.problems.append(
                    f"entry {entry_id} has no hash: it was inserted outside the hub"
                )
            else:
                out.unchained += 1
            prev_id = entry_id
            continue
        out.checked += 1
        if prev_hash is None:
            expected = anchor_hash if anchor_first == entry_id and anchor_hash else GENESIS
            if row["prev_hash"] != expected:
                out.problems.append(
                    f"entry {entry_id} is the first kept entry but does not start the chain:"
                    " entries before it were deleted without a retention prune"
                )
        elif row["prev_hash"] != prev_hash:
            gap = (
                f" (entries {prev_id + 1}-{entry_id - 1} are missing)"
                if prev_id is not None and entry_id > prev_id + 1
                else ""
            )
            out.problems.append(
                f"entry {entry_id} does not follow entry {prev_id}: an entry between them"
                f" was deleted or changed{gap}"
            )
        fields = (
            row["ts_ms"],
            row["key_id"],
            row["key_name"],
            row["role"],
            row["client"],
            row["method"],
            row["path"],
            row["query"],
            row["status"],
            row["rows"],
            row["district"],
            row["resource"],
        )
        if not hmac.compare_digest(_digest(key, entry_id, row["prev_hash"], fields), row["hash"]):
            out.problems.append(f"entry {entry_id} was changed after it was written")
        if row["method"] == PRUNE:
            q = parse_qs(row["query"])
            try:
                prunes.add((int(q["through_id"][0]) + 1, q["anchor"][0]))
            except (KeyError, ValueError, IndexError):
                out.problems.append(f"entry {entry_id} is a retention prune that names nothing")
        prev_id, prev_hash = entry_id, row["hash"]
        out.head_id, out.head_hash = entry_id, row["hash"]
    if anchor_first is not None and anchor_hash and (anchor_first, anchor_hash) not in prunes:
        out.problems.append(
            f"the chain starts at entry {anchor_first} but no retention prune entry says so"
        )
    if head is not None:
        head_id, head_hash = head
        row = conn.execute("SELECT hash FROM audit_log WHERE id = ?", (head_id,)).fetchone()
        if row is None or row["hash"] != head_hash:
            noted_gone = anchor_first is not None and head_id < anchor_first
            if not noted_gone:
                out.problems.append(
                    f"entry {head_id} noted earlier is gone or changed: entries were deleted"
                    " from the end of the log"
                )
    return out


# ---------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class ReportRow:
    """Requests of one key on one resource kind and district, in one period; or what open
    data published of one dataset (``action`` ``publish``, resource ``open_data:<dataset>``,
    ``requests`` the releases, ``rows`` the rows published, ``suppressed`` the cells
    under k)."""

    period_start_ms: int
    key_id: str | None
    key_name: str | None
    role: str | None
    resource: str
    district: str | None
    action: str  # read | change | publish
    requests: int
    rows: int
    refused: int
    #: The key's purpose and expiry (keys shared with other departments carry them).
    key_purpose: str | None = None
    key_expires_ms: int | None = None
    suppressed: int = 0


def report(
    conn: sqlite3.Connection,
    periods: Sequence[tuple[int, int]],
    *,
    key_id: str | None = None,
    district: str | None = None,
    resource: str | None = None,
) -> list[ReportRow]:
    """Who read or changed what: requests per period, key (with its purpose and expiry),
    resource kind, district and action (``read`` or ``change``), with rows returned or
    changed and refusals; and, city-wide, what open data published in each period
    (``publish`` rows, from its release log)."""
    out: list[ReportRow] = []
    reads = ", ".join(f"'{m}'" for m in sorted(READ_METHODS))
    ensure_key_schema(conn)
    for start, end in periods:
        where = ["ts_ms >= ?", "ts_ms < ?"]
        params: list[object] = [start, end]
        for column, value in (("key_id", key_id), ("district", district), ("resource", resource)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = (
            "SELECT key_id, key_name, role, resource, district,"  # noqa: S608  (constants and placeholders)
            f" CASE WHEN method IN ({reads}) THEN 'read' ELSE 'change' END AS action,"
            " COUNT(*) AS requests, COALESCE(SUM(rows), 0) AS total_rows,"
            " SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS refused,"
            " (SELECT purpose FROM api_keys WHERE api_keys.id = key_id) AS key_purpose,"
            " (SELECT expires_ms FROM api_keys WHERE api_keys.id = key_id) AS key_expires_ms"
            f" FROM audit_log WHERE {' AND '.join(where)}"
            " GROUP BY key_id, key_name, role, resource, district, action"
            " ORDER BY key_name, resource, district, action"
        )
        out.extend(
            ReportRow(
                start,
                r["key_id"],
                r["key_name"],
                r["role"],
                r["resource"] or "",
                r["district"],
                r["action"],
                int(r["requests"]),
                int(r["total_rows"]),
                int(r["refused"]),
                key_purpose=r["key_purpose"] or None,
                key_expires_ms=r["key_expires_ms"],
            )
            for r in conn.execute(sql, params)
        )
        if key_id is None and district is None:
            out.extend(
                ReportRow(
                    start,
                    None,
                    None,
                    None,
                    f"open_data:{p.dataset}",
                    None,
                    "publish",
                    p.releases,
                    p.rows,
                    0,
                    suppressed=p.suppressed,
                )
                for p in publications(conn, start, end)
                if resource is None or resource == f"open_data:{p.dataset}"
            )
    return out
