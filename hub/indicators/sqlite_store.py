"""The indicator roll-ups in the embedded state database (component ``indicators``).

Plain tables and plain SQL (``INSERT … ON CONFLICT … DO UPDATE``, no SQLite-only
types or functions), so a PostgreSQL store is a transcription. Bit sets are
hexadecimal text, maps and lists JSON text. Two connections: one for the writer
(the updater's flush runs in a worker thread), one for reads on the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from hub.indicators.rollup import HourFigures, HourState, Totals
from hub.indicators.store import (
    DELAY_BUCKETS,
    Arrivals,
    DayRow,
    DeviceDayKey,
    DeviceRecord,
    GroupKey,
    HourKey,
    StoredHour,
)
from hub.sqlite import connect, migrate

COMPONENT = "indicators"
MIGRATIONS: list[str] = [
    """
    CREATE TABLE ind_devices (
        device_id TEXT PRIMARY KEY,
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        commissioned_ms INTEGER NOT NULL,
        retired_ms INTEGER
    );
    CREATE TABLE ind_statuses (
        device_id TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (device_id, ts_ms, state)
    );
    CREATE TABLE ind_device_hours (
        device_id TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        day_ms INTEGER NOT NULL,
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        interval_ms INTEGER NOT NULL,
        first_slot INTEGER NOT NULL,
        n_slots INTEGER NOT NULL,
        bits TEXT NOT NULL,
        extra INTEGER NOT NULL,
        runs TEXT NOT NULL,
        stats TEXT NOT NULL,
        checks TEXT NOT NULL,
        received INTEGER NOT NULL,
        up INTEGER NOT NULL,
        seq_n INTEGER NOT NULL,
        seq_lost INTEGER NOT NULL,
        domain TEXT NOT NULL,
        carry INTEGER NOT NULL,
        seq_last INTEGER,
        PRIMARY KEY (device_id, hour_ms)
    );
    CREATE INDEX ind_device_hours_hour ON ind_device_hours (hour_ms);
    CREATE TABLE ind_device_days (
        device_id TEXT NOT NULL,
        day_ms INTEGER NOT NULL,
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        received INTEGER NOT NULL,
        up INTEGER NOT NULL,
        seq_n INTEGER NOT NULL,
        seq_lost INTEGER NOT NULL,
        domain TEXT NOT NULL,
        PRIMARY KEY (device_id, day_ms)
    );
    CREATE INDEX ind_device_days_day ON ind_device_days (day_ms, district);
    CREATE TABLE ind_group_days (
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        day_ms INTEGER NOT NULL,
        received INTEGER NOT NULL,
        up INTEGER NOT NULL,
        seq_n INTEGER NOT NULL,
        seq_lost INTEGER NOT NULL,
        domain TEXT NOT NULL,
        PRIMARY KEY (day_ms, district, asset_type)
    );
    CREATE TABLE ind_arrivals (
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        day_ms INTEGER NOT NULL,
        accepted INTEGER NOT NULL,
        rejected TEXT NOT NULL,
        delays TEXT NOT NULL,
        PRIMARY KEY (day_ms, district, asset_type)
    );
    CREATE TABLE ind_expected_days (
        day_ms INTEGER PRIMARY KEY
    );
    CREATE TABLE ind_expected (
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        day_ms INTEGER NOT NULL,
        slots INTEGER NOT NULL,
        PRIMARY KEY (day_ms, district, asset_type)
    );
    CREATE TABLE ind_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
]

_HOUR_COLUMNS = (
    "device_id, hour_ms, day_ms, district, asset_type, interval_ms, first_slot, n_slots,"
    " bits, extra, runs, stats, checks, received, up, seq_n, seq_lost, domain, carry, seq_last"
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _hour_params(row: StoredHour) -> tuple[Any, ...]:
    s, f = row.state, row.figures
    return (
        s.device_id,
        s.hour_ms,
        s.day_ms,
        s.district,
        s.asset_type,
        s.interval_ms,
        s.first_slot,
        s.n_slots,
        format(s.bits, "x"),
        s.extra,
        _json(s.runs),
        _json(s.stats),
        _json(s.checks),
        f.received,
        f.up,
        f.seq_n,
        f.seq_lost,
        _json(f.domain),
        f.carry,
        f.seq_last,
    )


def _hour(row: sqlite3.Row | tuple[Any, ...]) -> StoredHour:
    state = HourState(
        device_id=row[0],
        hour_ms=row[1],
        day_ms=row[2],
        district=row[3],
        asset_type=row[4],
        interval_ms=row[5],
        first_slot=row[6],
        n_slots=row[7],
        bits=int(row[8], 16),
        extra=row[9],
        runs=orjson.loads(row[10]),
        stats=orjson.loads(row[11]),
        checks=orjson.loads(row[12]),
    )
    figures = HourFigures(
        received=row[13],
        up=row[14],
        seq_n=row[15],
        seq_lost=row[16],
        domain=orjson.loads(row[17]),
        carry=row[18],
        seq_last=row[19],
    )
    return StoredHour(state, figures)


def _totals(row: sqlite3.Row | tuple[Any, ...], offset: int) -> Totals:
    return Totals(
        received=row[offset],
        up=row[offset + 1],
        seq_n=row[offset + 2],
        seq_lost=row[offset + 3],
        domain=orjson.loads(row[offset + 4]),
    )


def _in(column: str, values: Sequence[str] | None, params: list[Any]) -> str:
    if values is None:
        return ""
    if not values:
        return " AND 0 = 1"
    params.extend(values)
    return f" AND {column} IN ({', '.join('?' for _ in values)})"


class _Txn:
    """One write transaction on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def hour(self, key: HourKey) -> StoredHour | None:
        row = self._conn.execute(
            f"SELECT {_HOUR_COLUMNS} FROM ind_device_hours WHERE device_id = ? AND hour_ms = ?",  # noqa: S608
            key,
        ).fetchone()
        return _hour(row) if row is not None else None

    def hour_before(self, device_id: str, hour_ms: int) -> StoredHour | None:
        row = self._conn.execute(
            f"SELECT {_HOUR_COLUMNS} FROM ind_device_hours WHERE device_id = ? AND hour_ms < ?"  # noqa: S608
            " ORDER BY hour_ms DESC LIMIT 1",
            (device_id, hour_ms),
        ).fetchone()
        return _hour(row) if row is not None else None

    def hour_after(self, device_id: str, hour_ms: int) -> StoredHour | None:
        row = self._conn.execute(
            f"SELECT {_HOUR_COLUMNS} FROM ind_device_hours WHERE device_id = ? AND hour_ms > ?"  # noqa: S608
            " ORDER BY hour_ms LIMIT 1",
            (device_id, hour_ms),
        ).fetchone()
        return _hour(row) if row is not None else None

    def put_hour(self, row: StoredHour) -> None:
        self._conn.execute(
            f"INSERT INTO ind_device_hours ({_HOUR_COLUMNS}) VALUES"  # noqa: S608
            f" ({', '.join('?' * 20)}) ON CONFLICT (device_id, hour_ms) DO UPDATE SET"
            " day_ms = excluded.day_ms, district = excluded.district,"
            " asset_type = excluded.asset_type, interval_ms = excluded.interval_ms,"
            " first_slot = excluded.first_slot, n_slots = excluded.n_slots,"
            " bits = excluded.bits, extra = excluded.extra, runs = excluded.runs,"
            " stats = excluded.stats, checks = excluded.checks, received = excluded.received,"
            " up = excluded.up, seq_n = excluded.seq_n, seq_lost = excluded.seq_lost,"
            " domain = excluded.domain, carry = excluded.carry, seq_last = excluded.seq_last",
            _hour_params(row),
        )

    def delete_hour(self, key: HourKey) -> None:
        self._conn.execute("DELETE FROM ind_device_hours WHERE device_id = ? AND hour_ms = ?", key)

    def add_days(
        self,
        device_deltas: Mapping[DeviceDayKey, tuple[str, str, Totals]],
        group_deltas: Mapping[GroupKey, Totals],
    ) -> None:
        conn = self._conn
        for (device_id, day), (district, asset_type, delta) in device_deltas.items():
            row = conn.execute(
                "SELECT received, up, seq_n, seq_lost, domain FROM ind_device_days"
                " WHERE device_id = ? AND day_ms = ?",
                (device_id, day),
            ).fetchone()
            total = _totals(row, 0) if row is not None else Totals()
            total.add(delta)
            conn.execute(
                "INSERT INTO ind_device_days (device_id, day_ms, district, asset_type, received,"
                " up, seq_n, seq_lost, domain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (device_id, day_ms) DO UPDATE SET district = excluded.district,"
                " asset_type = excluded.asset_type, received = excluded.received,"
                " up = excluded.up, seq_n = excluded.seq_n, seq_lost = excluded.seq_lost,"
                " domain = excluded.domain",
                (
                    device_id,
                    day,
                    district,
                    asset_type,
                    total.received,
                    total.up,
                    total.seq_n,
                    total.seq_lost,
                    _json(total.domain),
                ),
            )
        for (district, asset_type, day), delta in group_deltas.items():
            row = conn.execute(
                "SELECT received, up, seq_n, seq_lost, domain FROM ind_group_days"
                " WHERE day_ms = ? AND district = ? AND asset_type = ?",
                (day, district, asset_type),
            ).fetchone()
            total = _totals(row, 0) if row is not None else Totals()
            total.add(delta)
            conn.execute(
                "INSERT INTO ind_group_days (district, asset_type, day_ms, received, up, seq_n,"
                " seq_lost, domain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (day_ms, district, asset_type) DO UPDATE SET"
                " received = excluded.received, up = excluded.up, seq_n = excluded.seq_n,"
                " seq_lost = excluded.seq_lost, domain = excluded.domain",
                (
                    district,
                    asset_type,
                    day,
                    total.received,
                    total.up,
                    total.seq_n,
                    total.seq_lost,
                    _json(total.domain),
                ),
            )

    def add_arrivals(self, arrivals: Mapping[GroupKey, Arrivals]) -> None:
        conn = self._conn
        for (district, asset_type, day), a in arrivals.items():
            row = conn.execute(
                "SELECT accepted, rejected, delays FROM ind_arrivals"
                " WHERE day_ms = ? AND district = ? AND asset_type = ?",
                (day, district, asset_type),
            ).fetchone()
            total = Arrivals()
            if row is not None:
                total = _arrivals(row, 0)
            total.add(a)
            conn.execute(
                "INSERT INTO ind_arrivals (district, asset_type, day_ms, accepted, rejected,"
                " delays) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day_ms, district, asset_type)"
                " DO UPDATE SET accepted = excluded.accepted, rejected = excluded.rejected,"
                " delays = excluded.delays",
                (
                    district,
                    asset_type,
                    day,
                    total.accepted,
                    _json(total.rejected),
                    _json(total.delays),
                ),
            )

    def put_devices(self, devices: Sequence[DeviceRecord]) -> None:
        self._conn.executemany(
            "INSERT INTO ind_devices (device_id, district, asset_type, commissioned_ms,"
            " retired_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
            " district = excluded.district, asset_type = excluded.asset_type,"
            " commissioned_ms = excluded.commissioned_ms, retired_ms = excluded.retired_ms",
            [
                (d.device_id, d.district, d.asset_type, d.commissioned_ms, d.retired_ms)
                for d in devices
            ],
        )

    def add_statuses(self, events: Sequence[tuple[str, int, str]]) -> None:
        self._conn.executemany(
            "INSERT INTO ind_statuses (device_id, ts_ms, state) VALUES (?, ?, ?)"
            " ON CONFLICT (device_id, ts_ms, state) DO NOTHING",
            events,
        )

    def put_expected(self, day_ms: int, slots: Mapping[tuple[str, str], int]) -> None:
        conn = self._conn
        conn.execute("DELETE FROM ind_expected WHERE day_ms = ?", (day_ms,))
        conn.executemany(
            "INSERT INTO ind_expected (district, asset_type, day_ms, slots) VALUES (?, ?, ?, ?)",
            [(d, a, day_ms, n) for (d, a), n in slots.items() if n],
        )
        conn.execute(
            "INSERT INTO ind_expected_days (day_ms) VALUES (?) ON CONFLICT (day_ms) DO NOTHING",
            (day_ms,),
        )

    def drop_expected(self, start_ms: int, end_ms: int) -> None:
        self._conn.execute(
            "DELETE FROM ind_expected WHERE day_ms >= ? AND day_ms < ?", (start_ms, end_ms)
        )
        self._conn.execute(
            "DELETE FROM ind_expected_days WHERE day_ms >= ? AND day_ms < ?", (start_ms, end_ms)
        )

    def cached_days(self, start_ms: int, end_ms: int) -> set[int]:
        return {
            int(r[0])
            for r in self._conn.execute(
                "SELECT day_ms FROM ind_expected_days WHERE day_ms >= ? AND day_ms < ?",
                (start_ms, end_ms),
            )
        }

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM ind_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO ind_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _arrivals(row: sqlite3.Row | tuple[Any, ...], offset: int) -> Arrivals:
    delays = orjson.loads(row[offset + 2])
    if len(delays) < DELAY_BUCKETS:  # written before a bucket was added
        delays += [0] * (DELAY_BUCKETS - len(delays))
    return Arrivals(row[offset], orjson.loads(row[offset + 1]), delays)


class SqliteIndicatorStore:
    """:class:`hub.indicators.store.IndicatorStore` on the embedded state database."""

    def __init__(self, path: Path) -> None:
        self._write = connect(path)
        self._read = connect(path)
        migrate(self._write, COMPONENT, MIGRATIONS)

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` on the writer connection."""
        conn = self._write
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield _Txn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def load_hour(self, key: HourKey) -> StoredHour | None:
        """One device-hour, read on the caller's (event loop's) connection."""
        row = self._read.execute(
            f"SELECT {_HOUR_COLUMNS} FROM ind_device_hours WHERE device_id = ? AND hour_ms = ?",  # noqa: S608
            key,
        ).fetchone()
        return _hour(row) if row is not None else None

    def hours(
        self, start_ms: int, end_ms: int, device_ids: Sequence[str] | None = None
    ) -> Iterator[StoredHour]:
        """Device-hours in ``[start_ms, end_ms)`` by device then hour (writer connection:
        the flush and the rebuild read what their own transaction wrote)."""
        params: list[Any] = [start_ms, end_ms]
        sql = (
            f"SELECT {_HOUR_COLUMNS} FROM ind_device_hours WHERE hour_ms >= ? AND hour_ms < ?"  # noqa: S608
            + _in("device_id", device_ids, params)
            + " ORDER BY device_id, hour_ms"
        )
        for row in self._write.execute(sql, params).fetchall():
            yield _hour(row)

    def devices(self) -> list[DeviceRecord]:
        """Every device record."""
        return [
            DeviceRecord(r[0], r[1], r[2], r[3], r[4])
            for r in self._read.execute(
                "SELECT device_id, district, asset_type, commissioned_ms, retired_ms"
                " FROM ind_devices ORDER BY device_id"
            )
        ]

    def statuses(self, since_ms: int) -> list[tuple[str, int, str]]:
        """Status messages from ``since_ms`` on, by device then time."""
        return [
            (r[0], r[1], r[2])
            for r in self._read.execute(
                "SELECT device_id, ts_ms, state FROM ind_statuses WHERE ts_ms >= ?"
                " ORDER BY device_id, ts_ms",
                (since_ms,),
            )
        ]

    def _days(
        self,
        table: str,
        start_ms: int,
        end_ms: int,
        districts: Sequence[str] | None,
        asset_types: Sequence[str] | None,
        domain: bool,
    ) -> list[DayRow]:
        device = "device_id" if table == "ind_device_days" else "NULL"
        sums = "domain" if domain else "NULL"
        params: list[Any] = [start_ms, end_ms]
        sql = (
            "SELECT district, asset_type, day_ms, received, up, seq_n, seq_lost,"  # noqa: S608
            f" {sums}, {device}"
            f" FROM {table} WHERE day_ms >= ? AND day_ms < ?"
            + _in("district", districts, params)
            + _in("asset_type", asset_types, params)
        )
        rows = self._read.execute(sql, params).fetchall()
        if not domain:
            return [DayRow(r[0], r[1], r[2], Totals(r[3], r[4], r[5], r[6]), r[8]) for r in rows]
        return [DayRow(r[0], r[1], r[2], _totals(r, 3), r[8]) for r in rows]

    def group_days(
        self,
        start_ms: int,
        end_ms: int,
        districts: Sequence[str] | None = None,
        asset_types: Sequence[str] | None = None,
        *,
        domain: bool = True,
    ) -> list[DayRow]:
        """District-day sums of days starting in ``[start_ms, end_ms)`` (without the
        domain sums when ``domain`` is false: less to read)."""
        return self._days("ind_group_days", start_ms, end_ms, districts, asset_types, domain)

    def device_days(
        self,
        start_ms: int,
        end_ms: int,
        districts: Sequence[str] | None = None,
        asset_types: Sequence[str] | None = None,
        *,
        domain: bool = True,
    ) -> list[DayRow]:
        """Device-day sums of days starting in ``[start_ms, end_ms)`` (see group_days)."""
        return self._days("ind_device_days", start_ms, end_ms, districts, asset_types, domain)

    def arrivals(
        self,
        start_ms: int,
        end_ms: int,
        districts: Sequence[str] | None = None,
        asset_types: Sequence[str] | None = None,
    ) -> dict[GroupKey, Arrivals]:
        """Arrival counts of days starting in ``[start_ms, end_ms)``."""
        params: list[Any] = [start_ms, end_ms]
        sql = (
            "SELECT district, asset_type, day_ms, accepted, rejected, delays FROM ind_arrivals"  # noqa: S608  (placeholders only)
            " WHERE day_ms >= ? AND day_ms < ?"
            + _in("district", districts, params)
            + _in("asset_type", asset_types, params)
        )
        return {
            (r[0], r[1], r[2]): _arrivals(r, 3) for r in self._read.execute(sql, params).fetchall()
        }

    def expected(self, start_ms: int, end_ms: int) -> dict[int, dict[tuple[str, str], int]]:
        """Cached expected slots of closed days starting in ``[start_ms, end_ms)``."""
        out: dict[int, dict[tuple[str, str], int]] = {
            r[0]: {}
            for r in self._read.execute(
                "SELECT day_ms FROM ind_expected_days WHERE day_ms >= ? AND day_ms < ?",
                (start_ms, end_ms),
            )
        }
        for district, asset_type, day, slots in self._read.execute(
            "SELECT district, asset_type, day_ms, slots FROM ind_expected"
            " WHERE day_ms >= ? AND day_ms < ?",
            (start_ms, end_ms),
        ):
            if day in out:
                out[day][(district, asset_type)] = slots
        return out

    def meta(self, key: str) -> str | None:
        """A meta value, or None."""
        row = self._read.execute("SELECT value FROM ind_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def prune(self, hours_before_ms: int, days_before_ms: int) -> int:
        """Drop old device-hours and device-days (district-days stay); rows removed."""
        with self.transaction():
            a = self._write.execute(
                "DELETE FROM ind_device_hours WHERE hour_ms < ?", (hours_before_ms,)
            ).rowcount
            b = self._write.execute(
                "DELETE FROM ind_device_days WHERE day_ms < ?", (days_before_ms,)
            ).rowcount
            # The last message before the cut stays: it says how each device starts.
            self._write.execute(
                "DELETE FROM ind_statuses WHERE ts_ms < ? AND (device_id, ts_ms) NOT IN"
                " (SELECT device_id, MAX(ts_ms) FROM ind_statuses WHERE ts_ms < ?"
                " GROUP BY device_id)",
                (hours_before_ms, hours_before_ms),
            )
        return int(a) + int(b)

    def close(self) -> None:
        """Close both connections."""
        self._write.close()
        self._read.close()
