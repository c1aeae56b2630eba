"""Incidents: alerts that share the grouping labels (district, asset type by default)
and arrive within the grouping window of each other belong to one incident."""

from __future__ import annotations

import functools
import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence


def assign_incident(
    conn: sqlite3.Connection,
    by: Sequence[str],
    window_ms: int,
    labels: Mapping[str, str],
    now_ms: int,
) -> tuple[str, int]:
    """The incident a newly opened alert joins (an open or recently closed one of its
    group), or a new one; counts the alert in. Runs inside the caller's transaction.

    Also returns when the incident's current burst began (its opening, or now when it
    had no open alert): ``group_wait`` counts from there, as Alertmanager's does.
    """
    key = _group_key(tuple(sorted((k, labels.get(k, "")) for k in by)))
    row = conn.execute(
        "SELECT id, opened_ms, open_count FROM incidents WHERE group_key = ?"
        " AND (closed_ms IS NULL OR closed_ms >= ?) AND last_ms >= ?"
        " ORDER BY last_ms DESC LIMIT 1",
        (key, now_ms - window_ms, now_ms - window_ms),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT id, opened_ms, open_count FROM incidents WHERE group_key = ?"
            " AND closed_ms IS NULL"
            " ORDER BY last_ms DESC LIMIT 1",
            (key,),
        ).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE incidents SET last_ms = ?, closed_ms = NULL,"
            " alert_count = alert_count + 1, open_count = open_count + 1 WHERE id = ?",
            (now_ms, row["id"]),
        )
        return str(row["id"]), int(row["opened_ms"]) if row["open_count"] > 0 else now_ms
    incident_id = "inc-" + uuid.uuid4().hex[:16]
    conn.execute(
        "INSERT INTO incidents (id, group_key, labels, opened_ms, last_ms, alert_count,"
        " open_count) VALUES (?, ?, ?, ?, ?, 1, 1)",
        (incident_id, key, key, now_ms, now_ms),
    )
    return incident_id, now_ms


@functools.lru_cache(maxsize=4096)
def _group_key(items: tuple[tuple[str, str], ...]) -> str:
    """The incidents' ``group_key`` (and ``labels``) column: the grouping labels as
    sorted JSON. The format is the one stored since the first version (stdlib json's
    spacing), so alerts after an upgrade still join the incidents open before it."""
    return json.dumps(dict(items), sort_keys=True)


def release_alert(conn: sqlite3.Connection, incident_id: str | None, now_ms: int) -> None:
    """An alert of the incident resolved; the incident closes with its last alert."""
    if incident_id is None:
        return
    conn.execute(
        "UPDATE incidents SET open_count = MAX(open_count - 1, 0), last_ms = ?,"
        " closed_ms = CASE WHEN open_count <= 1 THEN ? ELSE NULL END WHERE id = ?",
        (now_ms, now_ms, incident_id),
    )


def incident_summary(conn: sqlite3.Connection, incident_id: str | None) -> dict[str, object]:
    """Id, grouping labels and alert counts of an incident (for notification payloads)."""
    if incident_id is None:
        return {}
    row = conn.execute(
        "SELECT id, labels, opened_ms, closed_ms, alert_count, open_count FROM incidents"
        " WHERE id = ?",
        (incident_id,),
    ).fetchone()
    if row is None:
        return {}
    return {
        "id": row["id"],
        "labels": json.loads(row["labels"]),
        "opened_ms": row["opened_ms"],
        "closed_ms": row["closed_ms"],
        "alerts": row["alert_count"],
        "open_alerts": row["open_count"],
    }
