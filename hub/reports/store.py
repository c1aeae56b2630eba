"""Where reports are kept: the ``ReportStore`` port and its SQLite implementation.

The reports live in the hub's state database (component ``reports``), in four tables:
the reports themselves (what the public may see), the reporters' contact data apart
(``report_contacts``, so that retention and erasure delete rows, never blank columns,
and no query for public data can touch it), the links to alerts and incidents, and
the handling notes. The service (hub.reports.service) never sees a ``sqlite3.Row``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from hub.ports import ReportContact, ReportFilter, ReportLink, ReportNote, ReportRecord, Scope
from hub.sqlite import migrate

COMPONENT = "reports"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service_code TEXT NOT NULL,
        service_name TEXT NOT NULL,
        status TEXT NOT NULL,
        status_notes TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        address TEXT,
        address_id TEXT,
        lat REAL,
        lon REAL,
        media_url TEXT,
        attributes TEXT NOT NULL DEFAULT '{}',
        district TEXT NOT NULL,
        asset_type TEXT,
        requested_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        token TEXT UNIQUE,
        merged_into INTEGER REFERENCES reports (id)
    );
    CREATE INDEX reports_requested ON reports (requested_ms);
    CREATE INDEX reports_service ON reports (service_code, requested_ms);
    CREATE INDEX reports_district ON reports (district, requested_ms);
    CREATE TABLE report_contacts (
        report_id INTEGER PRIMARY KEY REFERENCES reports (id),
        email TEXT,
        first_name TEXT,
        last_name TEXT,
        phone TEXT,
        device_id TEXT,
        account_id TEXT,
        expires_ms INTEGER NOT NULL
    );
    CREATE INDEX report_contacts_email ON report_contacts (lower(email));
    CREATE INDEX report_contacts_expiry ON report_contacts (expires_ms);
    CREATE TABLE report_links (
        report_id INTEGER NOT NULL REFERENCES reports (id),
        alert_id TEXT NOT NULL,
        incident_id TEXT,
        rule_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        distance_m REAL,
        linked_ms INTEGER NOT NULL,
        PRIMARY KEY (report_id, alert_id)
    );
    CREATE INDEX report_links_alert ON report_links (alert_id);
    CREATE INDEX report_links_incident ON report_links (incident_id);
    CREATE TABLE report_notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        report_id INTEGER NOT NULL REFERENCES reports (id),
        ts_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        note TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE INDEX report_notes_report ON report_notes (report_id, id)
    """,
]


@dataclass(frozen=True, slots=True)
class NewReport:
    """What the service stores for an accepted report."""

    service_code: str
    service_name: str
    description: str
    address: str | None
    address_id: str | None
    lat: float | None
    lon: float | None
    media_url: str | None
    attributes: Mapping[str, tuple[str, ...]]
    district: str
    asset_type: str | None
    requested_ms: int
    token: str | None


@dataclass(frozen=True, slots=True)
class NewContact:
    """The reporter's contact data and identifiers, and when they are to be erased."""

    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    device_id: str | None
    account_id: str | None
    expires_ms: int

    @property
    def empty(self) -> bool:
        """True when nothing was given (then nothing is stored)."""
        return not any(
            (
                self.email,
                self.first_name,
                self.last_name,
                self.phone,
                self.device_id,
                self.account_id,
            )
        )


class ReportStore(Protocol):
    """Reports, contacts, links and notes (the SQLite implementation is below)."""

    def insert(self, report: NewReport, contact: NewContact, actor: str) -> int:
        """Store a new report (status open) with its contact data; return its id."""
        ...

    def get(self, report_id: int) -> ReportRecord | None:
        """One report with its links, or None."""
        ...

    def by_token(self, token: str) -> ReportRecord | None:
        """The report a token was given for, or None."""
        ...

    def find(self, flt: ReportFilter, scope: Scope) -> list[ReportRecord]:
        """Reports matching ``flt`` inside ``scope``, newest first."""
        ...

    def since(self, since_ms: int, limit: int) -> list[ReportRecord]:
        """Reports that arrived since ``since_ms``, oldest first, without links."""
        ...

    def contact(self, report_id: int) -> ReportContact | None:
        """The contact data of a report, or None."""
        ...

    def add_links(self, report_id: int, links: Sequence[ReportLink]) -> None:
        """Link a report to alerts (a link already there is kept)."""
        ...

    def notes(self, report_id: int) -> list[ReportNote]:
        """The report's handling, oldest first."""
        ...

    def set_status(
        self,
        report_id: int,
        status: str,
        note: str,
        actor: str,
        now_ms: int,
        merged_into: int | None = None,
    ) -> None:
        """Change the status (and public note) and record it in the notes."""
        ...

    def erase_contacts(self, email: str) -> int:
        """Delete the contact data given with ``email`` (any case); return how many."""
        ...

    def purge_contacts(self, now_ms: int) -> int:
        """Delete contact data whose retention ended; return how many."""
        ...


class SqliteReportStore:
    """:class:`ReportStore` in the hub's state database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        migrate(conn, COMPONENT, MIGRATIONS)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def insert(self, report: NewReport, contact: NewContact, actor: str) -> int:
        """Store a new report (status open) with its contact data; return its id."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO reports (service_code, service_name, status, description,"
                " address, address_id, lat, lon, media_url, attributes, district, asset_type,"
                " requested_ms, updated_ms, token)"
                " VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.service_code,
                    report.service_name,
                    report.description,
                    report.address,
                    report.address_id,
                    report.lat,
                    report.lon,
                    report.media_url,
                    _dumps({k: list(v) for k, v in report.attributes.items()}),
                    report.district,
                    report.asset_type,
                    report.requested_ms,
                    report.requested_ms,
                    report.token,
                ),
            )
            report_id = int(cursor.lastrowid or 0)
            if not contact.empty:
                conn.execute(
                    "INSERT INTO report_contacts (report_id, email, first_name, last_name,"
                    " phone, device_id, account_id, expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        report_id,
                        contact.email,
                        contact.first_name,
                        contact.last_name,
                        contact.phone,
                        contact.device_id,
                        contact.account_id,
                        contact.expires_ms,
                    ),
                )
            conn.execute(
                "INSERT INTO report_notes (report_id, ts_ms, status, note, actor)"
                " VALUES (?, ?, 'open', '', ?)",
                (report_id, report.requested_ms, actor),
            )
        return report_id

    def _records(self, rows: Sequence[sqlite3.Row], *, links: bool = True) -> list[ReportRecord]:
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        by_report: dict[int, list[ReportLink]] = {}
        contacts: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            contacts.update(
                int(r[0])
                for r in self._conn.execute(
                    f"SELECT report_id FROM report_contacts WHERE report_id IN ({marks})",  # noqa: S608  (placeholders only)
                    chunk,
                )
            )
            if links:
                for r in self._conn.execute(
                    "SELECT * FROM report_links"  # noqa: S608  (placeholders only)
                    f" WHERE report_id IN ({marks}) ORDER BY linked_ms, alert_id",
                    chunk,
                ):
                    by_report.setdefault(int(r["report_id"]), []).append(_link(r))
        return [
            _record(r, int(r["id"]) in contacts, tuple(by_report.get(int(r["id"]), ())))
            for r in rows
        ]

    def get(self, report_id: int) -> ReportRecord | None:
        """One report with its links, or None."""
        row = self._conn.execute("SELECT * FROM reports WHERE id = ?", (report_id,)).fetchone()
        return self._records([row])[0] if row is not None else None

    def by_token(self, token: str) -> ReportRecord | None:
        """The report a token was given for, or None."""
        row = self._conn.execute("SELECT * FROM reports WHERE token = ?", (token,)).fetchone()
        return self._records([row])[0] if row is not None else None

    def find(self, flt: ReportFilter, scope: Scope) -> list[ReportRecord]:
        """Reports matching ``flt`` inside ``scope``, newest first."""
        clauses: list[str] = []
        args: list[Any] = []

        def among(column: str, values: Sequence[Any]) -> None:
            clauses.append(f"{column} IN ({', '.join('?' for _ in values)})" if values else "0")
            args.extend(values)

        if flt.ids is not None:
            among("r.id", flt.ids)
        if flt.service_codes is not None:
            among("r.service_code", flt.service_codes)
        if flt.statuses is not None:
            among("r.status", flt.statuses)
        for column, value, op in (
            ("r.requested_ms", flt.start_ms, ">="),
            ("r.requested_ms", flt.end_ms, "<="),
            ("r.district", flt.district, "="),
            ("r.asset_type", flt.asset_type, "="),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        if flt.incident_id is not None or flt.alert_id is not None:
            column = "incident_id" if flt.incident_id is not None else "alert_id"
            clauses.append(
                f"r.id IN (SELECT report_id FROM report_links WHERE {column} = ?)"  # noqa: S608
            )
            args.append(flt.incident_id if flt.incident_id is not None else flt.alert_id)
        if scope.districts is not None:
            among("r.district", sorted(scope.districts))
        if scope.asset_types is not None:
            among("r.asset_type", sorted(scope.asset_types))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._conn.execute(
            f"SELECT r.* FROM reports r{where}"  # noqa: S608  (placeholders only)
            " ORDER BY r.requested_ms DESC, r.id DESC LIMIT ? OFFSET ?",
            (*args, max(0, flt.limit), max(0, flt.offset)),
        ).fetchall()
        return self._records(rows)

    def since(self, since_ms: int, limit: int) -> list[ReportRecord]:
        """Reports that arrived since ``since_ms``, oldest first, without links."""
        rows = self._conn.execute(
            "SELECT * FROM reports WHERE requested_ms >= ? ORDER BY requested_ms, id LIMIT ?",
            (since_ms, limit),
        ).fetchall()
        return self._records(rows, links=False)

    def contact(self, report_id: int) -> ReportContact | None:
        """The contact data of a report, or None."""
        row = self._conn.execute(
            "SELECT email, first_name, last_name, phone FROM report_contacts WHERE report_id = ?",
            (report_id,),
        ).fetchone()
        if row is None:
            return None
        return ReportContact(row["email"], row["first_name"], row["last_name"], row["phone"])

    def add_links(self, report_id: int, links: Sequence[ReportLink]) -> None:
        """Link a report to alerts (a link already there is kept)."""
        if not links:
            return
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO report_links (report_id, alert_id, incident_id, rule_id,"
                " reason, distance_m, linked_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        report_id,
                        link.alert_id,
                        link.incident_id,
                        link.rule_id,
                        link.reason,
                        link.distance_m,
                        link.linked_ms,
                    )
                    for link in links
                ],
            )

    def notes(self, report_id: int) -> list[ReportNote]:
        """The report's handling, oldest first."""
        return [
            ReportNote(r["ts_ms"], r["status"], r["note"], r["actor"])
            for r in self._conn.execute(
                "SELECT ts_ms, status, note, actor FROM report_notes WHERE report_id = ?"
                " ORDER BY id",
                (report_id,),
            )
        ]

    def set_status(
        self,
        report_id: int,
        status: str,
        note: str,
        actor: str,
        now_ms: int,
        merged_into: int | None = None,
    ) -> None:
        """Change the status (and public note) and record it in the notes."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE reports SET status = ?, status_notes = ?, updated_ms = ?,"
                " merged_into = COALESCE(?, merged_into) WHERE id = ?",
                (status, note, now_ms, merged_into, report_id),
            )
            conn.execute(
                "INSERT INTO report_notes (report_id, ts_ms, status, note, actor)"
                " VALUES (?, ?, ?, ?, ?)",
                (report_id, now_ms, status, note, actor),
            )

    def copy_links(self, from_id: int, to_id: int) -> None:
        """Give ``to_id`` the links of ``from_id`` it does not have yet (a merge)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO report_links (report_id, alert_id, incident_id, rule_id,"
                " reason, distance_m, linked_ms) SELECT ?, alert_id, incident_id, rule_id,"
                " reason, distance_m, linked_ms FROM report_links WHERE report_id = ?",
                (to_id, from_id),
            )

    def erase_contacts(self, email: str) -> int:
        """Delete the contact data given with ``email`` (any case); return how many."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM report_contacts WHERE lower(email) = lower(?)", (email,)
            )
        return int(cursor.rowcount)

    def purge_contacts(self, now_ms: int) -> int:
        """Delete contact data whose retention ended; return how many."""
        with self._transaction() as conn:
            cursor = conn.execute("DELETE FROM report_contacts WHERE expires_ms <= ?", (now_ms,))
        return int(cursor.rowcount)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _link(row: sqlite3.Row) -> ReportLink:
    return ReportLink(
        alert_id=row["alert_id"],
        incident_id=row["incident_id"],
        rule_id=row["rule_id"],
        reason=row["reason"],
        distance_m=row["distance_m"],
        linked_ms=row["linked_ms"],
    )


def _record(row: sqlite3.Row, has_contact: bool, links: tuple[ReportLink, ...]) -> ReportRecord:
    attributes = orjson.loads(row["attributes"] or "{}")
    return ReportRecord(
        id=int(row["id"]),
        service_code=row["service_code"],
        service_name=row["service_name"],
        status=row["status"],
        status_notes=row["status_notes"],
        description=row["description"],
        address=row["address"],
        address_id=row["address_id"],
        lat=row["lat"],
        lon=row["lon"],
        media_url=row["media_url"],
        attributes={str(k): tuple(str(x) for x in v) for k, v in attributes.items()},
        district=row["district"],
        asset_type=row["asset_type"],
        requested_ms=int(row["requested_ms"]),
        updated_ms=int(row["updated_ms"]),
        token=row["token"],
        merged_into=row["merged_into"],
        has_contact=has_contact,
        links=links,
    )
