"""Silences and maintenance windows: matchers plus a time range.

Whether a silence is active is derived from the clock each time it is asked,
never stored as a flag (so an expired silence cannot be "left on" by a crash).
Silenced alerts are still recorded and listed; they are just not notified.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hub.alerts.routing import MaintenanceWindow, matchers_match
from hub.ports import NotFound, Silence

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def silence_active(silence: Silence, now_ms: int) -> bool:
    """True while ``now_ms`` is within ``[starts_ms, ends_ms)``."""
    return silence.starts_ms <= now_ms < silence.ends_ms


def window_active(window: MaintenanceWindow, now_ms: int) -> bool:
    """True while the local time of ``window.timezone`` is inside the daily window.

    A window whose end is before its start runs over midnight (22:00-04:00); it
    then belongs to the day it started on.
    """
    local = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(ZoneInfo(window.timezone))
    t = local.time().replace(tzinfo=None)
    day = _DAY_NAMES[local.weekday()]
    yesterday = _DAY_NAMES[(local.weekday() - 1) % 7]
    if window.start <= window.end:
        return day in window.days and window.start <= t < window.end
    if t >= window.start:
        return day in window.days
    return t < window.end and yesterday in window.days


def window_spans(window: MaintenanceWindow, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """The occurrences of ``window`` overlapping ``[start_ms, end_ms)``, as epoch-ms spans.

    An overnight window (end before start) runs into the next day and belongs to the
    day it started on, as in :func:`window_active`.
    """
    zone = ZoneInfo(window.timezone)
    first = datetime.fromtimestamp(start_ms / 1000, tz=UTC).astimezone(zone).date()
    last = datetime.fromtimestamp(end_ms / 1000, tz=UTC).astimezone(zone).date()
    spans: list[tuple[int, int]] = []
    day = first - timedelta(days=1)  # an overnight occurrence of the day before
    while day <= last:
        if _DAY_NAMES[day.weekday()] in window.days:
            begin = datetime.combine(day, window.start, tzinfo=zone)
            end_day = day if window.start <= window.end else day + timedelta(days=1)
            finish = datetime.combine(end_day, window.end, tzinfo=zone)
            a, b = int(begin.timestamp() * 1000), int(finish.timestamp() * 1000)
            if b > start_ms and a < end_ms and b > a:
                spans.append((a, b))
        day += timedelta(days=1)
    return spans


class SilenceBook:
    """The silences table, cached in memory (silences are few and read on every alert)."""

    def __init__(self, conn: sqlite3.Connection, windows: Sequence[MaintenanceWindow] = ()) -> None:
        self._conn = conn
        self._windows = list(windows)
        self._silences: list[Silence] = []
        self.reload()

    def reload(self) -> None:
        """Read every silence from the database."""
        rows = self._conn.execute(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment FROM silences"
            " ORDER BY created_ms DESC, id"
        ).fetchall()
        self._silences = [
            Silence(
                id=r["id"],
                matchers=json.loads(r["matchers"]),
                starts_ms=r["starts_ms"],
                ends_ms=r["ends_ms"],
                created_by=r["created_by"],
                comment=r["comment"],
            )
            for r in rows
        ]

    def list(self, now_ms: int, *, include_expired: bool) -> list[Silence]:
        """Silences, newest first; expired ones only when asked."""
        return [s for s in self._silences if include_expired or s.ends_ms > now_ms]

    def create(
        self,
        matchers: Mapping[str, str],
        starts_ms: int,
        ends_ms: int,
        actor: str,
        comment: str,
        now_ms: int,
    ) -> Silence:
        """Store a new silence; raises ValueError on an empty matcher set or range."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        if ends_ms <= starts_ms:
            raise ValueError("a silence must end after it starts")
        for key, value in matchers.items():
            if not key or not isinstance(value, str) or not value:
                raise ValueError(f"matcher {key!r} needs a non-empty string value")
        silence = Silence(
            id=uuid.uuid4().hex,
            matchers=dict(matchers),
            starts_ms=starts_ms,
            ends_ms=ends_ms,
            created_by=actor,
            comment=comment,
        )
        self._conn.execute(
            "INSERT INTO silences (id, matchers, starts_ms, ends_ms, created_by, comment,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                silence.id,
                json.dumps(silence.matchers, sort_keys=True),
                starts_ms,
                ends_ms,
                actor,
                comment,
                now_ms,
            ),
        )
        self.reload()
        return silence

    def expire(self, silence_id: str, now_ms: int) -> Silence:
        """End a silence now (no-op on one already over); raises NotFound."""
        for s in self._silences:
            if s.id == silence_id:
                if s.ends_ms > now_ms:
                    starts = min(s.starts_ms, now_ms)
                    self._conn.execute(
                        "UPDATE silences SET ends_ms = ?, starts_ms = ? WHERE id = ?",
                        (now_ms, starts, silence_id),
                    )
                    self.reload()
                return next(x for x in self._silences if x.id == silence_id)
        raise NotFound(f"no silence {silence_id}")

    def muting(self, labels: Mapping[str, str], now_ms: int) -> tuple[str, int | None] | None:
        """Why an alert with ``labels`` is muted now (``silence:<id>``,
        ``maintenance:<name>``) and until when if known, or None."""
        for s in self._silences:
            if silence_active(s, now_ms) and matchers_match(s.matchers, labels):
                return f"silence:{s.id}", s.ends_ms
        for w in self._windows:
            if matchers_match(w.match, labels) and window_active(w, now_ms):
                return f"maintenance:{w.name}", None
        return None
