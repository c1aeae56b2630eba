"""The alert manager's tables in the shared state database (component ``alerts``).

Everything the manager knows lives here, so a restart picks up exactly where the
last process stopped: alerts and their transitions, incidents, silences, the
per-alert notification schedule (group wait, repeats, escalation steps), the
durable outbox and the notification log that deduplicates deliveries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from hub.sqlite import migrate

COMPONENT = "alerts"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        rule_id TEXT NOT NULL,
        rule_version TEXT NOT NULL,
        status TEXT NOT NULL,
        severity INTEGER NOT NULL,
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        source TEXT NOT NULL,
        summary TEXT NOT NULL,
        description TEXT NOT NULL,
        labels TEXT NOT NULL,
        explanation TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        acknowledged_ms INTEGER,
        resolved_ms INTEGER,
        incident_id TEXT,
        reopened_from TEXT,
        active_key TEXT UNIQUE,
        resolve_pending_ms INTEGER,
        reading_received_ms INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alerts_started ON alerts (started_ms);
    CREATE INDEX alerts_status ON alerts (status, started_ms);
    CREATE INDEX alerts_series ON alerts (rule_id, district, source, started_ms);
    CREATE INDEX alerts_source ON alerts (district, source, status);
    CREATE INDEX alerts_pending_resolve ON alerts (resolve_pending_ms)
        WHERE resolve_pending_ms IS NOT NULL;
    CREATE TABLE alert_transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL REFERENCES alerts (id),
        ts_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        actor TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        group_key TEXT NOT NULL,
        labels TEXT NOT NULL,
        opened_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        closed_ms INTEGER,
        alert_count INTEGER NOT NULL DEFAULT 0,
        open_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX incidents_group ON incidents (group_key, last_ms);
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_ms INTEGER NOT NULL,
        ends_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE alert_schedule (
        alert_id TEXT NOT NULL REFERENCES alerts (id),
        route TEXT NOT NULL,
        stage INTEGER NOT NULL,
        receivers TEXT NOT NULL,
        send_resolved INTEGER NOT NULL,
        next_ms INTEGER,
        repeat_ms INTEGER NOT NULL,
        fired INTEGER NOT NULL DEFAULT 0,
        muted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (alert_id, route, stage)
    );
    CREATE INDEX alert_schedule_due ON alert_schedule (next_ms) WHERE next_ms IS NOT NULL;
    CREATE INDEX alert_schedule_muted ON alert_schedule (muted) WHERE muted = 1;
    CREATE TABLE alert_receivers (
        alert_id TEXT NOT NULL REFERENCES alerts (id),
        receiver TEXT NOT NULL,
        send_resolved INTEGER NOT NULL,
        PRIMARY KEY (alert_id, receiver)
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        notification_id TEXT NOT NULL UNIQUE,
        receiver TEXT NOT NULL,
        alert_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX outbox_receiver ON outbox (receiver, seq);
    CREATE TABLE notify_log (
        notification_id TEXT PRIMARY KEY,
        receiver TEXT NOT NULL,
        alert_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        done_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX notify_log_alert ON notify_log (alert_id)
    """,
    # 2: digests. Notifications to digest receivers (webhook, Apprise, log) of one
    # incident go out together, at most once per the route's group_interval.
    """
    ALTER TABLE alert_schedule ADD COLUMN group_interval_ms INTEGER NOT NULL DEFAULT 60000;
    ALTER TABLE alert_receivers ADD COLUMN group_interval_ms INTEGER NOT NULL DEFAULT 60000;
    ALTER TABLE outbox ADD COLUMN group_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE outbox ADD COLUMN group_ms INTEGER NOT NULL DEFAULT 0
    """,
    # 3: why and by whom an alert was resolved, for the response indicators: the
    # reason an operator gives (fixed, false_alarm, ...) and "rule" when it cleared.
    """
    ALTER TABLE alerts ADD COLUMN resolution TEXT;
    ALTER TABLE alerts ADD COLUMN resolved_by TEXT
    """,
]


def migrate_alerts(conn: sqlite3.Connection) -> int:
    """Create or upgrade the alert manager's tables; return the schema version."""
    return migrate(conn, COMPONENT, MIGRATIONS)


def database_file(conn: sqlite3.Connection) -> str | None:
    """The file behind ``conn``'s main database (None in memory)."""
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return str(row[2]) or None
    return None


def checkpoint(path: str) -> None:
    """Copy the write-ahead log into the database file (PASSIVE: writers go on).

    Meant for a worker thread, with its own short-lived connection: the fsync it
    does is what made a commit on the event loop cost a millisecond.
    """
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
