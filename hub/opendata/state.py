"""What open data has published, kept in the state database behind a small port.

Three things (component ``opendata`` of the state DB, ``HUB_DATA_DIR/hub.db``):

- the **release log**: one entry per publication (what, which period, how many
  rows and how many cells were suppressed under ``k``, when, under which policy
  version, and the SHA-256 of what was published). It is only ever appended to.
  Operators read it (``GET /api/v1/open-data/releases``) and it feeds the audit
  report (:func:`publications`, :func:`releases` on the state DB connection);
- the published **aggregate cells** of ``public_aggregate`` metrics, and the
  **daily rows** of the bulk datasets: published once, never rewritten, so a
  download is reproducible and its ETag stable;
- per publication stream, how far it got (**watermarks**).

Every row keeps what a later, stricter policy needs to re-check it (devices,
tier, bucket): the serving side re-applies the current policy to stored rows, so
raising ``k`` or turning a metric internal withdraws what no longer qualifies at
once. SQL is kept plain (no SQLite-only constructs in the interface) so a
PostgreSQL implementation can follow the other state stores.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from hub.sqlite import migrate

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE open_releases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        dataset TEXT NOT NULL,
        period_start_ms INTEGER,
        period_end_ms INTEGER,
        rows INTEGER NOT NULL,
        suppressed INTEGER NOT NULL,
        policy_version TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX open_releases_ts ON open_releases (ts_ms);
    CREATE INDEX open_releases_dataset ON open_releases (dataset, id);
    CREATE TABLE open_cells (
        asset_type TEXT NOT NULL,
        metric TEXT NOT NULL,
        district TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        devices INTEGER NOT NULL,
        readings INTEGER NOT NULL,
        mean REAL NOT NULL,
        release_id INTEGER NOT NULL,
        PRIMARY KEY (asset_type, metric, district, bucket_ms, start_ms)
    );
    CREATE TABLE open_daily (
        asset_type TEXT NOT NULL,
        day_ms INTEGER NOT NULL,
        district TEXT NOT NULL,
        metric TEXT NOT NULL,
        tier TEXT NOT NULL,
        devices INTEGER NOT NULL,
        readings INTEGER NOT NULL,
        mean REAL NOT NULL,
        min REAL,
        max REAL,
        cells INTEGER,
        release_id INTEGER NOT NULL,
        PRIMARY KEY (asset_type, day_ms, district, metric)
    );
    CREATE TABLE open_watermarks (
        stream TEXT PRIMARY KEY,
        until_ms INTEGER NOT NULL
    )
    """,
)

ReleaseKind = Literal["policy", "aggregates", "daily"]


@dataclass(frozen=True, slots=True)
class NewRelease:
    """A publication about to be recorded."""

    ts_ms: int
    kind: ReleaseKind
    dataset: str
    period_start_ms: int | None
    period_end_ms: int | None
    rows: int
    suppressed: int
    policy_version: str
    sha256: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Release:
    """One entry of the release log: what was published, when, under which policy."""

    id: int
    ts_ms: int
    kind: str
    dataset: str
    period_start_ms: int | None
    period_end_ms: int | None
    rows: int
    suppressed: int
    policy_version: str
    sha256: str
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Cell:
    """A published aggregate: one district, metric and bucket, over ``devices`` devices."""

    asset_type: str
    metric: str
    district: str
    bucket_ms: int
    start_ms: int
    devices: int
    readings: int
    mean: float
    release_id: int = 0

    @property
    def end_ms(self) -> int:
        """End of the bucket (exclusive)."""
        return self.start_ms + self.bucket_ms


@dataclass(frozen=True, slots=True)
class DailyRow:
    """One row of a daily dataset: a district's day of one metric.

    ``min``/``max`` are None for aggregate-only metrics (each would be one device's
    value); ``cells`` is how many published cells an aggregate-only row sums, and
    ``devices`` then the fewest devices any of them had.
    """

    asset_type: str
    day_ms: int
    district: str
    metric: str
    tier: str
    devices: int
    readings: int
    mean: float
    min: float | None
    max: float | None
    cells: int | None
    release_id: int = 0


@dataclass(frozen=True, slots=True)
class CellQuery:
    """Cells of one aggregate metric (of one district, or all: None), bounded by bucket
    start (both ends inclusive)."""

    asset_type: str
    metric: str
    district: str | None
    bucket_ms: int
    min_devices: int
    first_start_ms: int
    last_start_ms: int
    descending: bool = False
    limit: int = 1000


class OpenDataState(Protocol):
    """The port the publisher and the open-data endpoints use (module docstring)."""

    def watermark(self, stream: str) -> int | None:
        """How far publication stream ``stream`` got (epoch ms, exclusive), or None."""
        ...

    def publish(
        self,
        *,
        stream: str,
        until_ms: int,
        release: NewRelease,
        cells: Sequence[Cell] = (),
        daily: Sequence[DailyRow] = (),
    ) -> Release:
        """Store published rows, log the release and move the stream on, all or nothing."""
        ...

    def record(self, release: NewRelease) -> Release:
        """Log a release that stores no rows (a policy taking effect)."""
        ...

    def advance(self, stream: str, until_ms: int) -> None:
        """Move ``stream`` on over a stretch that had nothing to publish (nothing logged)."""
        ...

    def releases(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Release]:
        """Release log entries, newest first."""
        ...

    def last_release(self, kind: str) -> Release | None:
        """The newest release of ``kind``, or None."""
        ...

    def cells(self, query: CellQuery) -> list[Cell]:
        """Published cells matching ``query``, by bucket start."""
        ...

    def daily(self, asset_type: str) -> list[DailyRow]:
        """Every daily row of ``asset_type``, by day, district and metric."""
        ...

    def daily_span(self, asset_type: str) -> tuple[int, int] | None:
        """First and last published day (start, epoch ms) of ``asset_type``, or None."""
        ...

    def dataset_release(self, dataset: str) -> int:
        """Id of the newest release of ``dataset`` (0 if none): changes when it grows."""
        ...


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the open-data tables."""
    migrate(conn, "opendata", MIGRATIONS)


def releases(
    conn: sqlite3.Connection,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[Release]:
    """The release log on a state DB connection, newest first (for the audit report).

    ``since_ms`` and ``until_ms`` bound the time of publication (``[since, until)``).
    """
    where: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("ts_ms >= ?", since_ms),
        ("ts_ms < ?", until_ms),
        ("kind = ?", kind),
        ("id < ?", before_id),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql = "SELECT * FROM open_releases"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [_release(row) for row in conn.execute(sql, params)]


@dataclass(frozen=True, slots=True)
class Publications:
    """What open data published of one dataset in a period (the audit report's rows)."""

    dataset: str
    releases: int
    rows: int
    suppressed: int


def publications(conn: sqlite3.Connection, start_ms: int, end_ms: int) -> list[Publications]:
    """Releases in ``[start_ms, end_ms)`` per dataset: how many, rows, suppressed cells."""
    ensure_schema(conn)
    return [
        Publications(r[0], int(r[1]), int(r[2]), int(r[3]))
        for r in conn.execute(
            "SELECT dataset, COUNT(*), COALESCE(SUM(rows), 0), COALESCE(SUM(suppressed), 0)"
            " FROM open_releases WHERE ts_ms >= ? AND ts_ms < ? GROUP BY dataset"
            " ORDER BY dataset",
            (start_ms, end_ms),
        )
    ]


def _release(row: sqlite3.Row) -> Release:
    return Release(
        id=row["id"],
        ts_ms=row["ts_ms"],
        kind=row["kind"],
        dataset=row["dataset"],
        period_start_ms=row["period_start_ms"],
        period_end_ms=row["period_end_ms"],
        rows=row["rows"],
        suppressed=row["suppressed"],
        policy_version=row["policy_version"],
        sha256=row["sha256"],
        detail=orjson.loads(row["detail"]),
    )


class SqliteOpenDataState:
    """:class:`OpenDataState` on its own connection to the state DB (one thread at a time)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        ensure_schema(conn)

    def watermark(self, stream: str) -> int | None:
        """How far ``stream`` got, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT until_ms FROM open_watermarks WHERE stream = ?", (stream,)
            ).fetchone()
        return None if row is None else int(row[0])

    def publish(
        self,
        *,
        stream: str,
        until_ms: int,
        release: NewRelease,
        cells: Sequence[Cell] = (),
        daily: Sequence[DailyRow] = (),
    ) -> Release:
        """Rows, release and watermark in one transaction."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                logged = self._insert_release(release)
                conn.executemany(
                    "INSERT OR IGNORE INTO open_cells (asset_type, metric, district, bucket_ms,"
                    " start_ms, devices, readings, mean, release_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            c.asset_type,
                            c.metric,
                            c.district,
                            c.bucket_ms,
                            c.start_ms,
                            c.devices,
                            c.readings,
                            c.mean,
                            logged.id,
                        )
                        for c in cells
                    ],
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO open_daily (asset_type, day_ms, district, metric, tier,"
                    " devices, readings, mean, min, max, cells, release_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            d.asset_type,
                            d.day_ms,
                            d.district,
                            d.metric,
                            d.tier,
                            d.devices,
                            d.readings,
                            d.mean,
                            d.min,
                            d.max,
                            d.cells,
                            logged.id,
                        )
                        for d in daily
                    ],
                )
                conn.execute(
                    "INSERT INTO open_watermarks (stream, until_ms) VALUES (?, ?)"
                    " ON CONFLICT (stream) DO UPDATE SET until_ms = excluded.until_ms",
                    (stream, until_ms),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return logged

    def record(self, release: NewRelease) -> Release:
        """Log a release without rows."""
        with self._lock:
            return self._insert_release(release)

    def advance(self, stream: str, until_ms: int) -> None:
        """Move ``stream`` on without a release."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO open_watermarks (stream, until_ms) VALUES (?, ?)"
                " ON CONFLICT (stream) DO UPDATE SET until_ms = excluded.until_ms",
                (stream, until_ms),
            )

    def _insert_release(self, release: NewRelease) -> Release:
        cursor = self._conn.execute(
            "INSERT INTO open_releases (ts_ms, kind, dataset, period_start_ms, period_end_ms,"
            " rows, suppressed, policy_version, sha256, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                release.ts_ms,
                release.kind,
                release.dataset,
                release.period_start_ms,
                release.period_end_ms,
                release.rows,
                release.suppressed,
                release.policy_version,
                release.sha256,
                orjson.dumps(dict(release.detail)).decode(),
            ),
        )
        assert cursor.lastrowid is not None
        return Release(id=cursor.lastrowid, **_fields(release))

    def releases(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Release]:
        """Release log entries, newest first."""
        with self._lock:
            return releases(
                self._conn,
                since_ms=since_ms,
                until_ms=until_ms,
                kind=kind,
                before_id=before_id,
                limit=limit,
            )

    def last_release(self, kind: str) -> Release | None:
        """The newest release of ``kind``."""
        found = self.releases(kind=kind, limit=1)
        return found[0] if found else None

    def cells(self, query: CellQuery) -> list[Cell]:
        """Published cells of one datastream within bucket-start bounds."""
        order = "DESC" if query.descending else "ASC"
        district = "" if query.district is None else " AND district = ?"
        params: list[Any] = [query.asset_type, query.metric]
        if query.district is not None:
            params.append(query.district)
        params += [
            query.bucket_ms,
            query.first_start_ms,
            query.last_start_ms,
            query.min_devices,
            query.limit,
        ]
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM open_cells WHERE asset_type = ? AND metric = ?"  # noqa: S608
                f"{district} AND bucket_ms = ? AND start_ms >= ? AND start_ms <= ?"
                f" AND devices >= ? ORDER BY start_ms {order}, district LIMIT ?",
                params,
            ).fetchall()
        return [
            Cell(
                asset_type=r["asset_type"],
                metric=r["metric"],
                district=r["district"],
                bucket_ms=r["bucket_ms"],
                start_ms=r["start_ms"],
                devices=r["devices"],
                readings=r["readings"],
                mean=r["mean"],
                release_id=r["release_id"],
            )
            for r in rows
        ]

    def daily(self, asset_type: str) -> list[DailyRow]:
        """Every daily row of ``asset_type``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM open_daily WHERE asset_type = ? ORDER BY day_ms, district, metric",
                (asset_type,),
            ).fetchall()
        return [
            DailyRow(
                asset_type=r["asset_type"],
                day_ms=r["day_ms"],
                district=r["district"],
                metric=r["metric"],
                tier=r["tier"],
                devices=r["devices"],
                readings=r["readings"],
                mean=r["mean"],
                min=r["min"],
                max=r["max"],
                cells=r["cells"],
                release_id=r["release_id"],
            )
            for r in rows
        ]

    def daily_span(self, asset_type: str) -> tuple[int, int] | None:
        """First and last published day of ``asset_type``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(day_ms), MAX(day_ms) FROM open_daily WHERE asset_type = ?",
                (asset_type,),
            ).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def dataset_release(self, dataset: str) -> int:
        """Id of the newest release of ``dataset``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(id) FROM open_releases WHERE dataset = ?", (dataset,)
            ).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0


def _fields(release: NewRelease) -> dict[str, Any]:
    return {
        "ts_ms": release.ts_ms,
        "kind": release.kind,
        "dataset": release.dataset,
        "period_start_ms": release.period_start_ms,
        "period_end_ms": release.period_end_ms,
        "rows": release.rows,
        "suppressed": release.suppressed,
        "policy_version": release.policy_version,
        "sha256": release.sha256,
        "detail": dict(release.detail),
    }
