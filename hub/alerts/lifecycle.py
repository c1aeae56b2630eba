"""Alert records and transitions in the database: firing -> acknowledged -> resolved.

The functions here run inside the manager's transactions; they never commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson

from hub.messages import Severity
from hub.ports import AlertRecord, Transition

#: Statuses of alerts that are still open.
ACTIVE = ("firing", "acknowledged")


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def series_key(rule_id: str, district: str, source: str) -> str:
    """One active alert per (rule, source): the unique key of an open alert."""
    return f"{rule_id}\x1f{district}\x1f{source}"


def match_labels(row: sqlite3.Row | Mapping[str, Any]) -> dict[str, str]:
    """What routes, silences and inhibit rules match: the alert's labels plus its
    identity (district, asset_type, severity, rule_id, source)."""
    labels: dict[str, str] = dict(orjson.loads(row["labels"])) if row["labels"] else {}
    labels.update(
        district=row["district"],
        asset_type=row["asset_type"],
        severity=Severity(row["severity"]).label,
        rule_id=row["rule_id"],
        source=row["source"],
    )
    return labels


def to_record(row: sqlite3.Row, *, muted_by: str | None = None) -> AlertRecord:
    """A database row as the port's AlertRecord; ``muted_by`` says why it is not notified."""
    return AlertRecord(
        id=row["id"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        status=row["status"],
        severity=Severity(row["severity"]).label,
        district=row["district"],
        asset_type=row["asset_type"],
        source=row["source"],
        summary=row["summary"],
        description=row["description"],
        labels=json.loads(row["labels"]),
        explanation=json.loads(row["explanation"]),
        started_ms=row["started_ms"],
        updated_ms=row["updated_ms"],
        acknowledged_ms=row["acknowledged_ms"],
        resolved_ms=row["resolved_ms"],
        silenced=muted_by is not None,
        incident_id=row["incident_id"],
        reopened_from=row["reopened_from"],
        muted_by=muted_by,
        resolution=row["resolution"],
    )


def alert_dict(row: sqlite3.Row) -> dict[str, Any]:
    """The alert as JSON for notification payloads."""
    return {
        "id": row["id"],
        "rule_id": row["rule_id"],
        "rule_version": row["rule_version"],
        "status": row["status"],
        "severity": Severity(row["severity"]).label,
        "district": row["district"],
        "asset_type": row["asset_type"],
        "source": row["source"],
        "summary": row["summary"],
        "description": row["description"],
        "labels": orjson.loads(row["labels"]),
        "explanation": orjson.loads(row["explanation"]),
        "started_ms": row["started_ms"],
        "updated_ms": row["updated_ms"],
        "acknowledged_ms": row["acknowledged_ms"],
        "resolved_ms": row["resolved_ms"],
        "incident_id": row["incident_id"],
        "reopened_from": row["reopened_from"],
    }


def get_row(conn: sqlite3.Connection, alert_id: str) -> sqlite3.Row | None:
    """One alert row."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM alerts WHERE id = ?", (alert_id,)
    ).fetchone()
    return row


def add_transition(
    conn: sqlite3.Connection,
    alert_id: str,
    ts_ms: int,
    status: str,
    actor: str,
    comment: str = "",
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append one step to an alert's timeline; returns its id."""
    cur = conn.execute(
        "INSERT INTO alert_transitions (alert_id, ts_ms, status, actor, comment, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            alert_id,
            ts_ms,
            status,
            actor,
            comment,
            _json(dict(detail or {})),
        ),
    )
    return int(cur.lastrowid or 0)


def timeline(conn: sqlite3.Connection, alert_id: str) -> list[Transition]:
    """Transitions of an alert, oldest first."""
    rows = conn.execute(
        "SELECT ts_ms, status, actor, comment, detail FROM alert_transitions"
        " WHERE alert_id = ? ORDER BY id",
        (alert_id,),
    ).fetchall()
    return [
        Transition(
            ts_ms=r["ts_ms"],
            status=r["status"],
            actor=r["actor"],
            comment=r["comment"],
            detail=json.loads(r["detail"]),
        )
        for r in rows
    ]


def source_state(
    conn: sqlite3.Connection, district: str, source: str, now_ms: int
) -> dict[str, Any]:
    """The current state of a source for the retained MQTT message."""
    rows = conn.execute(
        "SELECT id, rule_id, status, severity FROM alerts WHERE district = ? AND source = ?"
        " AND status IN ('firing', 'acknowledged') ORDER BY severity DESC, started_ms",
        (district, source),
    ).fetchall()
    alerts = [
        {
            "alert_id": r["id"],
            "rule_id": r["rule_id"],
            "status": r["status"],
            "severity": Severity(r["severity"]).label,
        }
        for r in rows
    ]
    worst = Severity(rows[0]["severity"]).label if rows else None
    return {
        "district": district,
        "source": source,
        "state": "alert" if rows else "clear",
        "severity": worst,
        "alerts": alerts,
        "ts": now_ms,
    }
