"""The durable outbox and the notification log.

A notification is written to ``outbox`` in the same transaction as the alert change
that caused it, so it survives a crash, a restart and a receiver outage. The
delivery worker takes it from there; on success it moves it to ``notify_log`` in
one transaction. Notification ids are derived from what caused them (alert,
receiver, schedule step or transition), and nothing whose id is in the log is ever
queued again: that is the deduplication across restarts.

Delivery is at least once: if the process dies between a receiver's "OK" and the
log commit, that one notification is sent again after the restart. Receivers can
drop such a repeat by its ``notification_id``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from hub.messages import Notification
from hub.retry import Backoff

#: Retry delays (hub.retry): 1 s doubling up to 5 min, with ±20 % jitter so that a
#: fleet of notifications to a receiver that comes back does not arrive in one burst.
BACKOFF = Backoff(first_s=1.0, max_s=5 * 60.0, jitter=0.2)


class Sender(Protocol):
    """A notifier as the outbox sees it (hub.notifiers implement it)."""

    concurrency: int
    digest: bool

    async def send(self, notification: Notification) -> None:
        """Deliver, or raise hub.ports.DeliveryError."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def backoff_ms(attempt: int) -> int:
    """Delay before retry number ``attempt`` (1-based)."""
    return round(BACKOFF.delay(attempt - 1) * 1000)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A queued notification."""

    seq: int
    notification: Notification
    kind: str


def enqueue(
    conn: sqlite3.Connection,
    notification_id: str,
    receiver: str,
    alert_id: str,
    kind: str,
    payload: Mapping[str, Any],
    now_ms: int,
    *,
    group_key: str = "",
    group_ms: int = 0,
) -> bool:
    """Queue one notification unless it was queued or sent before; True when queued.

    ``group_key`` (the incident) and ``group_ms`` (the route's group_interval) are
    what a digest receiver batches by; other receivers ignore them.
    """
    cur = conn.execute(
        "INSERT OR IGNORE INTO outbox (notification_id, receiver, alert_id, kind, payload,"
        " created_ms, next_attempt_ms, group_key, group_ms)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?"
        " WHERE NOT EXISTS (SELECT 1 FROM notify_log WHERE notification_id = ?)",
        (
            notification_id,
            receiver,
            alert_id,
            kind,
            orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode(),
            now_ms,
            now_ms,
            group_key,
            group_ms,
            notification_id,
        ),
    )
    return cur.rowcount > 0


def due(
    conn: sqlite3.Connection, receiver: str, now_ms: int, limit: int, after_seq: int = 0
) -> tuple[list[OutboxItem], int | None]:
    """Up to ``limit`` due items of a receiver's queue in order, from the head or from
    just after ``after_seq`` (the last item already handed out), stopping at the first
    one not due yet; and when that one is due, if no item was."""
    rows = conn.execute(
        "SELECT seq, notification_id, receiver, alert_id, kind, payload, created_ms, attempt,"
        " next_attempt_ms FROM outbox WHERE receiver = ? AND seq > ? ORDER BY seq LIMIT ?",
        (receiver, after_seq, limit),
    ).fetchall()
    items: list[OutboxItem] = []
    for r in rows:
        if r["next_attempt_ms"] > now_ms:
            if not items:
                return [], int(r["next_attempt_ms"])
            break
        items.append(_item(r))
    return items, None


def _item(r: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        seq=r["seq"],
        kind=r["kind"],
        notification=Notification(
            notification_id=r["notification_id"],
            receiver=r["receiver"],
            alert_id=r["alert_id"],
            payload=orjson.loads(r["payload"]),
            created_ms=r["created_ms"],
            attempt=r["attempt"],
        ),
    )


def digest_groups(
    conn: sqlite3.Connection, receiver: str, now_ms: int, last_sent: Mapping[str, int]
) -> tuple[list[tuple[str, list[OutboxItem]]], int | None]:
    """A digest receiver's queue by incident: the groups that may go out now (each in
    queue order, oldest group first), and when the next held one may.

    A group waits for ``group_ms`` after its last digest (``last_sent``) and for
    its slowest retry, so one incident's notifications never overtake each other.
    """
    heads = conn.execute(
        "SELECT CASE group_key WHEN '' THEN notification_id ELSE group_key END AS k,"
        " MAX(next_attempt_ms) AS due, MIN(group_ms) AS hold, MIN(seq) AS first"
        " FROM outbox WHERE receiver = ? GROUP BY k ORDER BY first",
        (receiver,),
    ).fetchall()
    ready: list[str] = []
    next_ms: int | None = None
    for h in heads:
        due = int(h["due"])
        if h["k"] in last_sent:
            due = max(due, last_sent[h["k"]] + int(h["hold"]))
        if due <= now_ms:
            ready.append(str(h["k"]))
        else:
            next_ms = due if next_ms is None else min(next_ms, due)
    groups = []
    for key in ready:
        rows = conn.execute(
            "SELECT seq, notification_id, receiver, alert_id, kind, payload, created_ms, attempt"
            " FROM outbox WHERE receiver = ?"
            " AND (group_key = ? OR (group_key = '' AND notification_id = ?)) ORDER BY seq",
            (receiver, key, key),
        ).fetchall()
        groups.append((key, [_item(r) for r in rows]))
    return groups, next_ms


def done(
    conn: sqlite3.Connection, item: OutboxItem, now_ms: int, outcome: str, detail: str = ""
) -> None:
    """Move an item to the log: ``sent``, or ``failed`` (non-retryable, dropped)."""
    done_many(conn, [item], now_ms, outcome, detail)


def done_many(
    conn: sqlite3.Connection,
    items: Sequence[OutboxItem],
    now_ms: int,
    outcome: str,
    detail: str = "",
) -> None:
    """:func:`done` for many items with one statement each (a storm settles in bulk)."""
    conn.executemany(
        "INSERT OR REPLACE INTO notify_log (notification_id, receiver, alert_id, kind,"
        " created_ms, done_ms, attempts, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                item.notification.notification_id,
                item.notification.receiver,
                item.notification.alert_id,
                item.kind,
                item.notification.created_ms,
                now_ms,
                item.notification.attempt + 1,
                outcome,
                detail[:500],
            )
            for item in items
        ],
    )
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(item.seq,) for item in items])


def retry_later(conn: sqlite3.Connection, item: OutboxItem, now_ms: int, error: str) -> int:
    """Count a failed attempt and push the item back; returns when it is due again."""
    attempt = item.notification.attempt + 1
    next_ms = now_ms + backoff_ms(attempt)
    conn.execute(
        "UPDATE outbox SET attempt = ?, next_attempt_ms = ?, last_error = ? WHERE seq = ?",
        (attempt, next_ms, error[:500], item.seq),
    )
    return next_ms


def already_sent(conn: sqlite3.Connection, notification_id: str) -> bool:
    """True when the log has this notification."""
    return (
        conn.execute(
            "SELECT 1 FROM notify_log WHERE notification_id = ?", (notification_id,)
        ).fetchone()
        is not None
    )


def pending_by_receiver(conn: sqlite3.Connection) -> dict[str, int]:
    """Queued notifications per receiver."""
    return {
        r["receiver"]: r["n"]
        for r in conn.execute("SELECT receiver, COUNT(*) AS n FROM outbox GROUP BY receiver")
    }
