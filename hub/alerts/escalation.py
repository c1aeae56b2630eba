"""The per-alert notification schedule: group wait, repeats, escalation steps.

Each route that matched an alert gets rows in ``alert_schedule``: stage 0 for the
route's receivers (due ``group_wait`` after its incident began, so a burst's alerts
are due together), stage *k* for escalation step *k*
(due ``after`` the alert started). A due row is notified and then moves on by
``repeat_interval`` (or stops when there is none). Acknowledging or resolving the
alert stops every row. Times are absolute epoch milliseconds read from the clock,
so a restarted manager continues the schedule on time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from hub.alerts.routing import RoutePlan


@dataclass(frozen=True, slots=True)
class DueStep:
    """A schedule row whose time has come."""

    alert_id: str
    route: str
    stage: int
    receivers: tuple[str, ...]
    send_resolved: bool
    fired: int
    repeat_ms: int
    group_interval_ms: int = 60_000


def schedule(
    conn: sqlite3.Connection,
    alert_id: str,
    plans: Sequence[RoutePlan],
    started_ms: int,
    now_ms: int,
    group_start_ms: int | None = None,
) -> None:
    """Add the rows of ``plans`` (rows that exist already are kept as they are).

    ``group_start_ms``: when the alert's incident began (default: the alert's start).
    """
    group_start = started_ms if group_start_ms is None else group_start_ms
    rows: list[tuple[object, ...]] = []
    for plan in plans:
        if plan.receivers:
            rows.append(
                (
                    alert_id,
                    plan.path,
                    0,
                    orjson.dumps(plan.receivers).decode(),
                    int(plan.send_resolved),
                    max(now_ms, group_start + plan.group_wait_ms),
                    plan.repeat_ms,
                    plan.group_interval_ms,
                )
            )
        for k, (after_ms, receivers) in enumerate(plan.escalate, start=1):
            rows.append(
                (
                    alert_id,
                    plan.path,
                    k,
                    orjson.dumps(receivers).decode(),
                    int(plan.send_resolved),
                    max(now_ms, started_ms + after_ms),
                    plan.repeat_ms,
                    plan.group_interval_ms,
                )
            )
    conn.executemany(
        "INSERT OR IGNORE INTO alert_schedule (alert_id, route, stage, receivers,"
        " send_resolved, next_ms, repeat_ms, group_interval_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def stop(conn: sqlite3.Connection, alert_id: str) -> None:
    """No more notifications from the schedule of this alert (ack or resolve)."""
    conn.execute(
        "UPDATE alert_schedule SET next_ms = NULL WHERE alert_id = ? AND next_ms IS NOT NULL",
        (alert_id,),
    )


def due(
    conn: sqlite3.Connection,
    now_ms: int,
    alert_ids: Sequence[str] | None = None,
    limit: int = -1,
) -> list[DueStep]:
    """Rows due now (of ``alert_ids`` only, when given), oldest first; at most
    ``limit`` of them when ``alert_ids`` is not given (-1: all)."""
    columns = (
        "alert_id, route, stage, receivers, send_resolved, fired, repeat_ms, group_interval_ms"
    )
    if alert_ids is None:
        rows = conn.execute(
            f"SELECT {columns} FROM alert_schedule"  # noqa: S608  (constant columns)
            " WHERE next_ms IS NOT NULL AND next_ms <= ? ORDER BY next_ms, alert_id, stage"
            " LIMIT ?",
            (now_ms, limit),
        ).fetchall()
    else:
        rows = []
        # Once each: a series firing twice in one batch touches its alert twice.
        for alert_id in dict.fromkeys(alert_ids):
            rows.extend(
                conn.execute(
                    f"SELECT {columns} FROM alert_schedule"  # noqa: S608  (constant columns)
                    " WHERE alert_id = ? AND next_ms IS NOT NULL AND next_ms <= ?"
                    " ORDER BY stage",
                    (alert_id, now_ms),
                ).fetchall()
            )
    return [
        DueStep(
            alert_id=r["alert_id"],
            route=r["route"],
            stage=r["stage"],
            receivers=tuple(orjson.loads(r["receivers"])),
            send_resolved=bool(r["send_resolved"]),
            fired=r["fired"],
            repeat_ms=r["repeat_ms"],
            group_interval_ms=r["group_interval_ms"],
        )
        for r in rows
    ]


def fired(conn: sqlite3.Connection, step: DueStep, now_ms: int) -> None:
    """The step was notified: count it and move it on by its repeat interval."""
    next_ms = now_ms + step.repeat_ms if step.repeat_ms > 0 else None
    conn.execute(
        "UPDATE alert_schedule SET fired = fired + 1, next_ms = ?, muted = 0"
        " WHERE alert_id = ? AND route = ? AND stage = ?",
        (next_ms, step.alert_id, step.route, step.stage),
    )


def cancel(conn: sqlite3.Connection, step: DueStep) -> None:
    """Drop one step (its alert is no longer firing)."""
    conn.execute(
        "UPDATE alert_schedule SET next_ms = NULL WHERE alert_id = ? AND route = ? AND stage = ?",
        (step.alert_id, step.route, step.stage),
    )


def mute(conn: sqlite3.Connection, step: DueStep, until_ms: int) -> None:
    """The step's alert is silenced or inhibited: look again at ``until_ms``."""
    conn.execute(
        "UPDATE alert_schedule SET next_ms = ?, muted = 1"
        " WHERE alert_id = ? AND route = ? AND stage = ?",
        (until_ms, step.alert_id, step.route, step.stage),
    )


def wake_muted(conn: sqlite3.Connection, now_ms: int) -> None:
    """A silence ended early or an inhibiting alert resolved: re-check muted steps now."""
    conn.execute(
        "UPDATE alert_schedule SET next_ms = ? WHERE muted = 1 AND next_ms > ?",
        (now_ms, now_ms),
    )
