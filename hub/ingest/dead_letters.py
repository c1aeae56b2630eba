"""The dead-letter store: every refused message or reading, counted and kept (bounded).

Operators read it through ``GET /api/v1/dead-letters``. It keeps the newest
``capacity`` rejections; older ones are evicted, but the per-reason counts
cover everything ever refused (they are what a dashboard alerts on).
Implements :class:`hub.ports.DeadLetterPort`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from hub import metrics
from hub.logging import get_logger, truncate
from hub.messages import Rejection
from hub.ports import DeadLetter, Scope
from hub.sqlite import migrate

log = get_logger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_ms INTEGER NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        payload TEXT NOT NULL,
        device_id TEXT,
        district TEXT,
        asset_type TEXT
    );
    CREATE INDEX dead_letters_reason ON dead_letters (reason, id);
    CREATE INDEX dead_letters_device ON dead_letters (device_id, id);
    CREATE TABLE dead_letter_counts (
        reason TEXT PRIMARY KEY,
        total INTEGER NOT NULL
    );
    CREATE TABLE dead_letter_stats (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )
    """,
]

# A flood of bad input must not flood the log too: one line per reason per window,
# saying how many more were refused meanwhile (all of them are counted and kept).
_LOG_WINDOW_S = 10.0


class DeadLetterStore:
    """Bounded SQLite store of rejections, with all-time counts per reason."""

    def __init__(self, conn: sqlite3.Connection, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._conn = conn
        self.capacity = capacity
        migrate(conn, "dead_letters", MIGRATIONS)
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def add(self, rejections: Sequence[Rejection]) -> None:
        """Count and keep ``rejections``; evict the oldest beyond ``capacity``."""
        if not rejections:
            return
        by_reason: dict[str, int] = {}
        for r in rejections:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        # Only the newest `capacity` can survive; the rest are counted as evicted at once.
        kept = rejections[-self.capacity :]
        skipped = len(rejections) - len(kept)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO dead_letters (received_ms, topic, reason, detail, payload,"
                " device_id, district, asset_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.received_ms,
                        r.topic,
                        r.reason,
                        r.detail,
                        r.payload.decode("utf-8", errors="backslashreplace"),
                        r.device_id,
                        r.district,
                        _asset_type(r.topic),
                    )
                    for r in kept
                ],
            )
            conn.executemany(
                "INSERT INTO dead_letter_counts (reason, total) VALUES (?, ?)"
                " ON CONFLICT (reason) DO UPDATE SET total = total + excluded.total",
                list(by_reason.items()),
            )
            evicted = conn.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                (self.capacity,),
            ).rowcount
            if evicted + skipped:
                conn.execute(
                    "INSERT INTO dead_letter_stats (name, value) VALUES ('evicted', ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    (evicted + skipped,),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for reason, n in by_reason.items():
            metrics.REJECTED.labels(reason=reason).inc(n)
        self._log(rejections)

    def recent(
        self, *, reason: str | None, device_id: str | None, limit: int, scope: Scope
    ) -> list[DeadLetter]:
        """Kept rejections, newest first, filtered by reason, device and scope."""
        where: list[str] = []
        args: list[object] = []
        if reason is not None:
            where.append("reason = ?")
            args.append(reason)
        if device_id is not None:
            where.append("device_id = ?")
            args.append(device_id)
        if scope.districts is not None:
            where.append(f"district IN ({','.join('?' * len(scope.districts))})")
            args.extend(sorted(scope.districts))
        if scope.asset_types is not None:
            where.append(f"asset_type IN ({','.join('?' * len(scope.asset_types))})")
            args.extend(sorted(scope.asset_types))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        # Only fixed fragments and placeholders are joined; values go as parameters.
        columns = "id, received_ms, topic, reason, detail, payload, device_id, district"
        query = f"SELECT {columns} FROM dead_letters {clause} ORDER BY id DESC LIMIT ?"  # noqa: S608
        rows = self._conn.execute(query, (*args, max(0, limit))).fetchall()
        return [DeadLetter(*tuple(row)) for row in rows]

    def counts_by_reason(self) -> dict[str, int]:
        """Rejections ever counted, per reason (including those since evicted)."""
        rows = self._conn.execute("SELECT reason, total FROM dead_letter_counts ORDER BY reason")
        return {str(reason): int(total) for reason, total in rows}

    def kept_by_reason(self) -> dict[str, int]:
        """Rejections currently kept, per reason."""
        rows = self._conn.execute(
            "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason ORDER BY reason"
        )
        return {str(reason): int(n) for reason, n in rows}

    @property
    def evicted(self) -> int:
        """How many rejections were dropped from the store to keep it bounded."""
        row = self._conn.execute(
            "SELECT value FROM dead_letter_stats WHERE name = 'evicted'"
        ).fetchone()
        return int(row[0]) if row else 0

    def _log(self, rejections: Sequence[Rejection]) -> None:
        now = time.monotonic()
        for r in rejections:
            last = self._last_log.get(r.reason)
            if last is not None and now - last < _LOG_WINDOW_S:
                self._suppressed[r.reason] = self._suppressed.get(r.reason, 0) + 1
                continue
            self._last_log[r.reason] = now
            log.warning(
                "message refused",
                reason=r.reason,
                detail=r.detail,
                topic=r.topic,
                payload=truncate(r.payload),
                similar_since_last_log=self._suppressed.pop(r.reason, 0),
            )


def _asset_type(topic: str) -> str | None:
    """The asset type level of a device topic (for scoped reads), when it has one."""
    parts = topic.split("/")
    return parts[-3] if len(parts) >= 5 else None
