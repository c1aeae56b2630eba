"""The embedded telemetry store: SQLite in ``HUB_DATA_DIR/telemetry.db``.

The default when no InfluxDB is configured. Same layout and semantics as the
InfluxDB store (CONTRACT §3, one shared contract test suite):

* one row per reading, keyed ``(asset_type, device_id, ts_ms)``: a redelivered
  reading replaces itself (idempotent);
* metrics as a JSON object: booleans stay booleans, every other number is
  stored as a float, ``seq`` as an integer column, ``quality`` and
  ``out_of_range`` columns for readings whose quality is not ``ok``;
* field types are fixed per (asset type, metric) the first time a metric is
  seen, as InfluxDB does: a reading that sends a boolean where numbers were
  stored (or the reverse) is refused with the reason;
* queries: buckets aligned to the epoch, ``mean``/``min``/``max`` over numeric
  metrics, ``last`` and ``count`` over every metric, empty buckets omitted;
* area aggregates (open data): per district and bucket across an asset type's
  devices, computed by SQLite itself (``json_extract``, ``GROUP BY``), so the
  seconds a city's day takes are spent in C without the GIL, on a connection of
  their own (the API's telemetry queries do not wait behind them).

Why one row per reading with a JSON column, not a narrow (device, metric, ts)
table: a reading is one insert instead of three to five (the write rate is
what limits the embedded store at a city's load), and the telemetry query of
the API (one device, one day) is a primary-key range scan of ~1440 rows.

SQLite work runs in a worker thread (``asyncio.to_thread``) so the event loop
never blocks; the writer uses ``synchronous=FULL`` because the store sink
commits its journal checkpoint as soon as a write returns.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from hub.logging import get_logger
from hub.messages import MetricValue, Reading
from hub.sqlite import connect, migrate
from hub.store.base import (
    AGGREGATES,
    AreaCell,
    AreaQuery,
    Point,
    StoreQueryError,
    StoreUnavailable,
    TelemetryQuery,
    WriteResult,
)
from hub.store.line_protocol import MAX_INT64, RESERVED_FIELDS

log = get_logger(__name__)

TELEMETRY_DB = "telemetry.db"
HISTORY_PAGE = 5000

MIGRATIONS = [
    """
    CREATE TABLE readings (
        asset_type TEXT NOT NULL,
        device_id TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        district TEXT NOT NULL,
        seq INTEGER,
        quality TEXT,
        out_of_range TEXT,
        metrics TEXT NOT NULL,
        PRIMARY KEY (asset_type, device_id, ts_ms)
    ) WITHOUT ROWID;
    CREATE INDEX readings_time ON readings (ts_ms, asset_type, district, device_id);
    CREATE TABLE field_types (
        asset_type TEXT NOT NULL,
        metric TEXT NOT NULL,
        type TEXT NOT NULL,
        PRIMARY KEY (asset_type, metric)
    ) WITHOUT ROWID;
    """
]

_INSERT = (
    "INSERT OR REPLACE INTO readings"
    " (asset_type, device_id, ts_ms, district, seq, quality, out_of_range, metrics)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_json_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _dumps(values: Mapping[str, MetricValue]) -> str:
    """The metrics column: compact JSON (orjson, several times faster; the stdlib for
    what orjson refuses, such as an integer beyond 64 bits)."""
    try:
        return orjson.dumps(values).decode()
    except orjson.JSONEncodeError:
        return _json_dumps(values)


class EmbeddedStore:
    """Telemetry in a SQLite file, with the InfluxDB store's semantics."""

    name = "embedded"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._area: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._area_lock = threading.Lock()
        self._types: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create or migrate the database file."""
        if self._writer is not None:
            return
        try:
            await asyncio.to_thread(self._open_sync)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"embedded store {self.path}: {exc}") from exc

    def _open_sync(self) -> None:
        writer = connect(self.path)
        writer.row_factory = None
        writer.execute("PRAGMA synchronous=FULL")
        migrate(writer, "telemetry", MIGRATIONS)
        reader = connect(self.path)
        reader.row_factory = None
        self._types = {
            (a, m): t
            for a, m, t in writer.execute("SELECT asset_type, metric, type FROM field_types")
        }
        self._writer, self._reader = writer, reader
        log.info("embedded store open", path=str(self.path))

    async def close(self) -> None:
        """Close the database connections."""
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._write_lock, self._read_lock, self._area_lock:
            for conn in (self._writer, self._reader, self._area):
                if conn is not None:
                    conn.close()
            self._writer = self._reader = self._area = None

    async def ping(self) -> bool:
        """True once open."""
        return self._writer is not None

    # ------------------------------------------------------------------ writes

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Insert or replace one row per reading; refuse what the layout cannot hold."""
        if not readings:
            return WriteResult(0)
        if self._writer is None:
            await self.open()
        try:
            return await asyncio.to_thread(self._write_sync, readings)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"embedded store write failed: {exc}") from exc

    def _write_sync(self, readings: Sequence[Reading]) -> WriteResult:
        refused: list[tuple[Reading, str]] = []
        rows: list[tuple[Any, ...]] = []
        new_types: dict[tuple[str, str], str] = {}
        types = self._types
        for reading in readings:
            reason = _refusal(reading)
            if reason is None:
                for name, value in reading.metrics.items():
                    key = (reading.asset_type, name)
                    kind = "boolean" if value is True or value is False else "float"
                    known = types.get(key) or new_types.get(key)
                    if known is None:
                        new_types[key] = kind
                    elif known != kind:
                        reason = (
                            f"field type conflict: {name!r} is {known} in "
                            f"{reading.asset_type!r}, this reading sends {kind}"
                        )
                        break
            if reason is not None:
                refused.append((reading, reason))
                continue
            metrics = {
                k: (v if v is True or v is False else float(v)) for k, v in reading.metrics.items()
            }
            bad = reading.quality != "ok"
            rows.append(
                (
                    reading.asset_type,
                    reading.device_id,
                    reading.ts_ms,
                    reading.district,
                    reading.seq,
                    reading.quality if bad else None,
                    ",".join(reading.out_of_range) if bad else None,
                    _dumps(metrics),
                )
            )
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StoreUnavailable("embedded store is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                if new_types:
                    conn.executemany(
                        "INSERT OR IGNORE INTO field_types (asset_type, metric, type)"
                        " VALUES (?, ?, ?)",
                        [(a, m, t) for (a, m), t in new_types.items()],
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        types.update(new_types)
        return WriteResult(written=len(rows), refused=refused)

    # ------------------------------------------------------------------ queries

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            if self._reader is None:
                raise StoreUnavailable("embedded store is not open")
            return self._reader.execute(sql, params).fetchall()

    async def query(self, query: TelemetryQuery) -> list[Point]:
        """Points of one device, raw or aggregated, ordered by time then metric."""
        if self._reader is None:
            await self.open()
        return await asyncio.to_thread(self._query_sync, query)

    def _query_sync(self, query: TelemetryQuery) -> list[Point]:
        aggregated = query.every_ms is not None and query.agg is not None
        order = "DESC" if query.descending else "ASC"
        sql = (
            "SELECT ts_ms, metrics FROM readings"  # noqa: S608 - fixed text and placeholders
            " WHERE asset_type = ? AND device_id = ? AND ts_ms >= ? AND ts_ms < ?"
            f" ORDER BY ts_ms {order}"
        )
        params: list[Any] = [query.asset_type, query.device_id, query.start_ms, query.end_ms]
        if not aggregated:
            if query.metrics:
                # Only rows that carry a wanted metric count towards the limit (as InfluxDB
                # selects only rows where a selected field is set).
                carried = " OR ".join("json_extract(metrics, ?) IS NOT NULL" for _ in query.metrics)
                sql = sql.replace(" ORDER BY", f" AND ({carried}) ORDER BY")
                params.extend(f"$.{m}" for m in query.metrics)
            sql += " LIMIT ?"
            params.append(query.limit)
        rows = self._rows(sql, params)
        wanted = set(query.metrics) if query.metrics else None
        if not aggregated:
            points: list[Point] = []
            for ts, blob in rows:
                values: dict[str, MetricValue] = json.loads(blob)
                for name in sorted(values):
                    if wanted is None or name in wanted:
                        points.append(Point(ts, name, _float(values[name])))
            return points[: query.limit]
        assert query.every_ms is not None
        assert query.agg is not None
        if query.every_ms <= 0:
            raise StoreQueryError("every must be positive")
        if query.agg not in AGGREGATES:
            raise StoreQueryError(f"unknown aggregate {query.agg!r}")
        out = _aggregate(rows, wanted, query.every_ms, query.agg)
        if query.descending:
            out.sort(key=lambda p: (-p.ts_ms, p.metric))
        return out[: query.limit]

    async def area_aggregate(self, query: AreaQuery) -> list[AreaCell]:
        """Per district, bucket and metric across the asset type's devices (module docstring)."""
        if query.every_ms <= 0:
            raise StoreQueryError("every must be positive")
        metrics = sorted(set(query.metrics))
        if not metrics or query.start_ms >= query.end_ms:
            return []
        if self._reader is None:
            await self.open()
        return await asyncio.to_thread(self._area_sync, query, metrics)

    def _area_sync(self, query: AreaQuery, metrics: list[str]) -> list[AreaCell]:
        sql, params = _area_sql(query, metrics)
        with self._area_lock:
            if self._area is None:
                if self._reader is None:
                    raise StoreUnavailable("embedded store is not open")
                self._area = connect(self.path)
                self._area.row_factory = None
            rows = self._area.execute(sql, params).fetchall()
        cells: list[AreaCell] = []
        for row in rows:
            district, bucket = row[0], row[1]
            for i, metric in enumerate(metrics):
                devices, readings, total, low, high = row[2 + 5 * i : 7 + 5 * i]
                if readings:
                    cells.append(
                        AreaCell(district, bucket, metric, devices, readings, total, low, high)
                    )
        return cells

    async def history(
        self, start_ms: int, end_ms: int, asset_types: Sequence[str] | None = None
    ) -> AsyncIterator[Reading]:
        """Every stored reading in ``[start_ms, end_ms)`` in time order, page by page."""
        if self._reader is None:
            await self.open()
        kinds = list(asset_types) if asset_types is not None else None
        if kinds is not None and not kinds:
            return
        cursor: tuple[int, str, str, str] = (start_ms - 1, "\uffff", "\uffff", "\uffff")
        while True:
            page = await asyncio.to_thread(self._history_page, cursor, end_ms, kinds)
            for row in page:
                yield _reading(row)
            if len(page) < HISTORY_PAGE:
                return
            last = page[-1]
            cursor = (last[2], last[0], last[3], last[1])

    def _history_page(
        self, cursor: tuple[int, str, str, str], end_ms: int, kinds: list[str] | None
    ) -> list[tuple[Any, ...]]:
        sql = (
            "SELECT asset_type, device_id, ts_ms, district, seq, quality, out_of_range, metrics"
            " FROM readings WHERE (ts_ms, asset_type, district, device_id) > (?, ?, ?, ?)"
            " AND ts_ms < ?"
        )
        params: list[Any] = [*cursor, end_ms]
        if kinds is not None:
            sql += f" AND asset_type IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        sql += " ORDER BY ts_ms, asset_type, district, device_id LIMIT ?"
        params.append(HISTORY_PAGE)
        return self._rows(sql, params)


def _area_sql(query: AreaQuery, metrics: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """One pass over the asset type's readings in range, every metric a column.

    The devices of the asset type are walked first (a recursive skip scan of the
    primary key, one seek per device), then each device's range is a primary-key
    range scan: the time index would visit every asset type's rows in the range.
    A value is left out when its reading flagged that metric out of range.
    """
    params: dict[str, Any] = {
        "at": query.asset_type,
        "start": query.start_ms,
        "end": query.end_ms,
        "every": query.every_ms,
    }
    columns: list[str] = []
    figures: list[str] = []
    for i, metric in enumerate(metrics):
        params[f"path{i}"] = f"$.{metric}"
        params[f"flag{i}"] = f",{metric},"
        columns.append(
            f"CASE WHEN r.out_of_range IS NULL"
            f" OR instr(',' || r.out_of_range || ',', :flag{i}) = 0"
            f" THEN json_extract(r.metrics, :path{i}) END AS v{i}"
        )
        figures.append(
            f"COUNT(DISTINCT CASE WHEN v{i} IS NOT NULL THEN device_id END),"
            f" COUNT(v{i}), TOTAL(v{i}), MIN(v{i}), MAX(v{i})"
        )
    # Only fixed text and numbered placeholders are joined: the names travel as parameters.
    sql = (
        "WITH RECURSIVE dev(id) AS ("  # noqa: S608
        " SELECT (SELECT MIN(device_id) FROM readings WHERE asset_type = :at)"
        " UNION ALL"
        " SELECT (SELECT MIN(device_id) FROM readings WHERE asset_type = :at"
        " AND device_id > dev.id) FROM dev WHERE dev.id IS NOT NULL"
        "), pts AS ("
        " SELECT r.district AS district, r.device_id AS device_id, r.ts_ms AS ts_ms, "
        + ", ".join(columns)
        + " FROM dev CROSS JOIN readings AS r"
        " WHERE r.asset_type = :at AND r.device_id = dev.id"
        " AND r.ts_ms >= :start AND r.ts_ms < :end"
        ") SELECT district, ts_ms - (ts_ms % :every) AS bucket, "
        + ", ".join(figures)
        + " FROM pts GROUP BY 1, 2"
    )
    return sql, params


def _refusal(reading: Reading) -> str | None:
    """The storage-layout checks the line protocol makes, without building a line."""
    if not reading.metrics:
        return "not representable in the storage layout: reading has no metrics"
    for name, value in reading.metrics.items():
        if name in RESERVED_FIELDS:
            return (
                "not representable in the storage layout: "
                f"metric name {name!r} is reserved by the storage layout"
            )
        if not (value is True or value is False):
            try:
                finite = math.isfinite(value)
            except (TypeError, OverflowError):
                finite = False
            if not finite:
                return (
                    "not representable in the storage layout: "
                    f"metric {name!r} is not a finite number: {value!r}"
                )
    if reading.seq is not None and not 0 <= reading.seq <= MAX_INT64:
        return f"not representable in the storage layout: seq {reading.seq} is out of range"
    return None


def _float(value: MetricValue) -> float:
    if value is True:
        return 1.0
    if value is False:
        return 0.0
    return float(value)


def _aggregate(
    rows: Iterable[tuple[int, str]], wanted: set[str] | None, every_ms: int, agg: str
) -> list[Point]:
    """Epoch-aligned buckets of ``every_ms``; InfluxQL's ``GROUP BY time() fill(none)``."""
    numeric_only = agg in ("mean", "min", "max")
    # (bucket, metric) -> [sum or extreme or last, count]
    acc: dict[tuple[int, str], list[Any]] = {}
    for ts, blob in rows:
        bucket = ts - ts % every_ms
        values: dict[str, MetricValue] = json.loads(blob)
        for name, value in values.items():
            if wanted is not None and name not in wanted:
                continue
            if numeric_only and isinstance(value, bool):
                continue
            v = _float(value)
            slot = acc.get((bucket, name))
            if slot is None:
                acc[(bucket, name)] = [v, 1]
                continue
            slot[1] += 1
            if agg == "mean":
                slot[0] += v
            elif agg == "min":
                slot[0] = min(slot[0], v)
            elif agg == "max":
                slot[0] = max(slot[0], v)
            elif agg == "last":
                slot[0] = v  # rows come in time order
    out: list[Point] = []
    for (bucket, name), (value, count) in sorted(acc.items()):
        if agg == "mean":
            out.append(Point(bucket, name, value / count))
        elif agg == "count":
            out.append(Point(bucket, name, float(count)))
        else:
            out.append(Point(bucket, name, value))
    return out


def _reading(row: tuple[Any, ...]) -> Reading:
    asset_type, device_id, ts_ms, district, seq, quality, out_of_range, blob = row
    return Reading(
        district=district,
        asset_type=asset_type,
        device_id=device_id,
        ts_ms=ts_ms,
        metrics=json.loads(blob),
        seq=seq,
        quality=quality or "ok",
        out_of_range=tuple(x for x in (out_of_range or "").split(",") if x),
    )
