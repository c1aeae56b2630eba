"""The embedded SQLite database under ``HUB_DATA_DIR``: connections and migrations.

Each component (registry, alerts, keys, audit, dead letters, rule state) owns its
tables and declares its migrations as an ordered list of SQL scripts; applied
versions are recorded per component in ``schema_migrations``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path

#: The main state database (everything but telemetry, which has its own file).
STATE_DB = "hub.db"


def connect(path: Path, *, check_same_thread: bool = False) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with sane durability and a busy timeout.

    The database and its ``-wal`` and ``-shm`` files are made 0600 (the folder is
    created 0700): they hold the city's data (hub.datadir).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=check_same_thread, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives process crashes (not power loss of the last txn);
    # durability against power loss is the journal's job, which fsyncs.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    _private(path)
    return conn


def _private(path: Path) -> None:
    """Take group and other access away from the database's files.

    By mode, not by creating the file ourselves: opening and closing a descriptor of
    a database file drops every POSIX lock this process holds on it, which would
    break the locking of the connections already open (SQLite's own warning).
    """
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                os.chmod(file, mode & 0o700)
        except FileNotFoundError:
            continue


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    """Apply the not-yet-applied ``migrations`` of ``component``; return its version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " component TEXT NOT NULL, version INTEGER NOT NULL,"
        " PRIMARY KEY (component, version))"
    )
    row = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?",
        (component,),
    ).fetchone()
    current = int(row[0])
    for version, script in enumerate(migrations, start=1):
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                (component, version),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current


def _statements(script: str) -> list[str]:
    """Split a migration script on ``;`` at line ends (no triggers with bodies here)."""
    return [s.strip() for s in script.split(";\n") if s.strip().rstrip(";")]
