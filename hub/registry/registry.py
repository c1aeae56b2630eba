"""The device registry: provisioning, last seen, latest values, online/offline, seq accounting.

The hot path (:meth:`Registry.apply_readings`) touches memory only; :meth:`Registry.flush`
persists what changed to SQLite in one transaction, and the runtime calls it right
before it commits the journal checkpoint, so a restart replays exactly the readings
the saved state has not seen. Provisioning changes (:meth:`Registry.upsert_device`,
:meth:`Registry.delete_device`, :meth:`Registry.import_file`) are written at once.

Rules, as documented for operators in docs/devices.md:

* **Last seen** is the hub's receive time of the newest-arriving reading (not its
  ``ts``: a backfilled reading proves the device is alive now). **Latest values**
  are kept per metric, the one with the newest ``ts`` winning, so a backfill never
  overwrites a fresher value.
* **Status** comes from the device's status topic (birth / last will); a status
  applies when its ``ts`` is not older than the current one (newer wins, a tie goes
  to the later arrival). A device that never sent a status becomes ``online`` with
  its first reading. **Stale**: no reading received for 3x the asset type's
  expected interval.
* **Seq accounting** per device, tolerant of reordering, backfill and restarts:
  - ``seq == high + 1``: in order.
  - ``seq > high + 1``: the numbers in between are *pending* (maybe late).
  - a pending number arriving later *fills* its gap (a backfill, a reordering).
  - ``seq <= high`` with a ``ts`` newer than the reading that set ``high``: the
    device restarted its counter; a new epoch starts at ``seq`` (pending numbers of
    the old epoch are confirmed missing).
  - ``seq <= high``, not pending, within the window (:data:`SEQ_WINDOW` below
    ``high``, and not before the first seq seen): a *duplicate*.
  - older than the window: too old to account for; counted as neither.
  A pending number is *confirmed* missing once it falls :data:`SEQ_WINDOW` behind
  ``high`` or has been pending for :data:`GAP_GRACE_MS`; only confirmed gaps go into
  ``hub_seq_gaps_total`` (a counter cannot go down when a backfill fills a gap).
  ``DeviceInfo.seq_gaps`` is confirmed + pending: what is missing right now.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from bisect import bisect_left, insort
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from hub import metrics
from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import (
    ASSET_TYPE_RE,
    DEVICE_ID_RE,
    DISTRICT_RE,
    MetricValue,
    Reading,
    StatusUpdate,
)
from hub.ports import DeviceCounts, DeviceFilter, DeviceInfo, DeviceStatusEvent, Scope
from hub.registry.provisioning import DeviceRow, parse_import_file
from hub.sqlite import migrate

log = get_logger(__name__)

#: How far behind the highest seq a missing number may still arrive and fill its gap
#: (and how far back duplicates are recognised): ~17 h of a 60 s device, enough for a
#: store-and-forward backfill after a long outage, and a bounded set per device.
SEQ_WINDOW = 1024
#: A number pending this long is confirmed missing even if the window has not moved
#: past it (a device that reports rarely must not hide its losses for days).
GAP_GRACE_MS = 15 * 60 * 1000


def _encode(value: Any) -> str:
    """Compact JSON text. orjson: a flush encodes three documents per device, and with
    the stdlib encoder a flush of 10,000 devices held the event loop for ~150 ms."""
    return orjson.dumps(value).decode()


#: The background flush builds and writes this many devices at a time and pauses
#: between them (by default this long): 10,000 changed devices at once held the
#: event loop (and the alerts on it) for ~150 ms every checkpoint.
FLUSH_CHUNK = 200
FLUSH_PAUSE_S = 0.01
#: A device is stale after this many expected intervals without a reading.
STALE_INTERVALS = 3
#: Devices looked at for staleness per tick (each tick goes on where the last ended).
STALE_SCAN_PER_TICK = 2000
#: Labels of a device without metadata (shared, read-only).
_NO_LABELS: Mapping[str, str] = MappingProxyType({})

MIGRATIONS = [
    """
    CREATE TABLE registry_devices (
        device_id TEXT PRIMARY KEY,
        district TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        provisioned INTEGER NOT NULL DEFAULT 0,
        latitude REAL,
        longitude REAL,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_ms INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'unknown',
        status_ts_ms INTEGER,
        last_seen_ms INTEGER,
        latest TEXT NOT NULL DEFAULT '{}',
        latest_ts TEXT NOT NULL DEFAULT '{}',
        seq TEXT
    );
    CREATE TABLE registry_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
    );
    INSERT INTO registry_generation (id, generation) VALUES (1, 0)
    """,
]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``hub devices import`` did: counts, or the problems that stopped it."""

    path: Path
    created: int = 0
    updated: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file was valid and applied."""
        return not self.problems


class _Device:
    """Mutable in-memory state of one device (the hot path writes these)."""

    __slots__ = (
        "asset_type",
        "created_ms",
        "district",
        "dups",
        "gaps",
        "labels",
        "last_seen",
        "latest",
        "latest_ts",
        "latitude",
        "longitude",
        "max_ts",
        "metadata",
        "pending",
        "provisioned",
        "seq_floor",
        "seq_high",
        "seq_high_ts",
        "stale",
        "status",
        "status_ts",
    )

    def __init__(self, district: str, asset_type: str, created_ms: int) -> None:
        self.district = district
        self.asset_type = asset_type
        self.created_ms = created_ms
        self.provisioned = False
        self.latitude: float | None = None
        self.longitude: float | None = None
        self.metadata: dict[str, Any] = {}
        self.labels = _NO_LABELS
        self.status = "unknown"
        self.status_ts: int | None = None
        self.last_seen: int | None = None
        self.latest: dict[str, MetricValue] = {}
        self.latest_ts: dict[str, int] = {}
        self.max_ts = -1
        self.stale = False
        self.seq_high: int | None = None
        self.seq_high_ts = 0
        self.seq_floor = 0
        self.pending: dict[int, int] = {}  # missing seq -> when it was first missed (ms)
        self.gaps = 0  # confirmed missing
        self.dups = 0

    def seq_json(self) -> str | None:
        if self.seq_high is None and not self.gaps and not self.dups:
            return None
        return _encode(
            {
                "high": self.seq_high,
                "high_ts": self.seq_high_ts,
                "floor": self.seq_floor,
                "pending": list(self.pending.items()),
                "gaps": self.gaps,
                "dups": self.dups,
            }
        )

    def load_seq(self, text: str | None) -> None:
        if not text:
            return
        data = json.loads(text)
        self.seq_high = data["high"]
        self.seq_high_ts = int(data["high_ts"])
        self.seq_floor = int(data["floor"])
        self.pending = {int(s): int(t) for s, t in data["pending"]}
        self.gaps = int(data["gaps"])
        self.dups = int(data["dups"])


class _Cell:
    """Device counts of one (district, asset type), kept up to date as devices change."""

    __slots__ = ("devices", "offline", "online", "stale")

    def __init__(self) -> None:
        self.devices = 0
        self.online = 0
        self.offline = 0
        self.stale = 0


#: A device's row in ``registry_devices``, as the flush writes it.
_Row = tuple[str, str, str, int, str, "int | None", "int | None", str, str, "str | None"]


def _row(device_id: str, dev: _Device) -> _Row:
    return (
        device_id,
        dev.district,
        dev.asset_type,
        dev.created_ms,
        dev.status,
        dev.status_ts,
        dev.last_seen,
        _encode(dev.latest),
        _encode(dev.latest_ts),
        dev.seq_json(),
    )


def _write_rows(rows: Sequence[_Row], conn: sqlite3.Connection) -> None:
    """Upsert device rows (built on the loop; this may run in a worker thread)."""
    if not rows:
        return
    # Provisioning columns are not overwritten here: they are written at once by
    # upsert/import (possibly by `hub devices import` in another process).
    with _transaction(conn):
        conn.executemany(
            "INSERT INTO registry_devices (device_id, district, asset_type, created_ms,"
            " status, status_ts_ms, last_seen_ms, latest, latest_ts, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(device_id) DO UPDATE SET status = excluded.status,"
            " status_ts_ms = excluded.status_ts_ms, last_seen_ms = excluded.last_seen_ms,"
            " latest = excluded.latest, latest_ts = excluded.latest_ts, seq = excluded.seq",
            rows,
        )


class Registry:
    """Device state for the API and the runtime (implements ``hub.ports.DeviceRegistryPort``)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        clock: Clock,
        expected_interval_s: Callable[[str], float | None],
        on_status_change: Callable[[DeviceStatusEvent], None] | None = None,
        flush_conn: sqlite3.Connection | None = None,
    ) -> None:
        self._conn = conn
        # A second connection to the same database, used only by flush_async's
        # worker thread (a connection must not be shared mid-transaction).
        self._flush_conn = flush_conn
        self._clock = clock
        self._expected_interval_s = expected_interval_s
        self._on_status_change = on_status_change
        self._devices: dict[str, _Device] = {}
        self._dirty: set[str] = set()
        #: A background flush under way: devices it has yet to write, and the rows of
        #: those that changed since it began (copied before the change).
        self._flushing: set[str] | None = None
        self._captured: dict[str, _Row] = {}
        self._with_pending: set[str] = set()
        # Read-side indexes, so the API's lists and status board never scan or sort
        # every device per request: counts per (district, asset type), and device ids
        # kept sorted overall and per district. Every change of a device's presence,
        # district, asset type, status or staleness goes through _add/_remove/_place/_count.
        self._cells: dict[tuple[str, str], _Cell] = {}
        self._order: list[str] = []
        self._scan_pos = 0  # where the next tick's staleness scan starts in _order
        self._district_order: dict[str, list[str]] = {}
        migrate(conn, "registry", MIGRATIONS)
        self._generation = self._read_generation()
        self._load()

    # ------------------------------------------------------------------ hot path

    def apply_readings(self, readings: Sequence[Reading]) -> None:
        """Last seen, latest values per metric and seq accounting for a batch of readings."""
        devices = self._devices
        dirty = self._dirty
        flushing = self._flushing
        dups = 0
        for r in readings:
            device_id = r.device_id
            dev = devices.get(device_id)
            if dev is None:
                dev = self._auto_register(r)
            elif flushing is not None and device_id in flushing:
                self._keep_for_flush(device_id, dev)
            received = r.received_ms or r.ts_ms
            last_seen = dev.last_seen
            if last_seen is None or received > last_seen:
                dev.last_seen = received
            ts = r.ts_ms
            latest_ts = dev.latest_ts
            if ts >= dev.max_ts:
                dev.max_ts = ts
                latest = dev.latest
                for name, value in r.metrics.items():
                    latest[name] = value
                    latest_ts[name] = ts
            else:
                latest = dev.latest
                for name, value in r.metrics.items():
                    if ts >= latest_ts.get(name, -1):
                        latest[name] = value
                        latest_ts[name] = ts
            seq = r.seq
            if seq is not None:
                high = dev.seq_high
                if high is not None and seq == high + 1 and not dev.pending:
                    dev.seq_high = seq
                    dev.seq_high_ts = ts
                else:
                    dups += self._seq_slow(device_id, dev, seq, ts, received)
            if dev.stale or dev.status == "unknown":
                self._came_alive(device_id, dev, received)
            dirty.add(device_id)
        if dups:
            metrics.SEQ_DUPLICATES.inc(dups)

    def _seq_slow(self, device_id: str, dev: _Device, seq: int, ts: int, now: int) -> int:
        """Seq accounting off the in-order path; returns duplicates found."""
        high = dev.seq_high
        pending = dev.pending
        if high is None:
            dev.seq_high, dev.seq_high_ts, dev.seq_floor = seq, ts, seq
            return 0
        if seq > high:
            for missing in range(max(high + 1, seq - SEQ_WINDOW), seq):
                pending[missing] = now
            beyond_window = (seq - high - 1) - min(seq - high - 1, SEQ_WINDOW)
            dev.seq_high, dev.seq_high_ts = seq, ts
            self._confirm(dev, beyond_window + self._drop_pending(dev, seq - SEQ_WINDOW))
        elif ts > dev.seq_high_ts:
            # A smaller or equal seq with a newer timestamp: the device restarted its
            # counter. What the old epoch still missed is lost for good.
            self._confirm(dev, len(pending))
            pending.clear()
            dev.seq_high, dev.seq_high_ts, dev.seq_floor = seq, ts, seq
        elif seq in pending:
            del pending[seq]  # a late or backfilled reading fills its gap
        elif seq >= max(dev.seq_floor, high - SEQ_WINDOW):
            dev.dups += 1
            return 1
        # else: older than the window or than the first seq seen; cannot be judged.
        if pending:
            self._with_pending.add(device_id)
        else:
            self._with_pending.discard(device_id)
        return 0

    @staticmethod
    def _drop_pending(dev: _Device, below: int) -> int:
        """Remove pending numbers below ``below``; return how many."""
        if not dev.pending or min(dev.pending) >= below:
            return 0
        gone = [s for s in dev.pending if s < below]
        for s in gone:
            del dev.pending[s]
        return len(gone)

    @staticmethod
    def _confirm(dev: _Device, count: int) -> None:
        if count > 0:
            dev.gaps += count
            metrics.SEQ_GAPS.inc(count)

    def _auto_register(self, r: Reading) -> _Device:
        dev = _Device(r.district, r.asset_type, self._clock.now_ms())
        self._add(r.device_id, dev)
        return dev

    def _came_alive(self, device_id: str, dev: _Device, now: int) -> None:
        if dev.status != "unknown" and not dev.stale:
            return
        self._count(dev, -1)
        if dev.status == "unknown":
            dev.status = "online"
        dev.stale = False
        self._count(dev, 1)
        self._emit(device_id, dev, dev.status, now)

    # ------------------------------------------------------------------ indexes

    def _count(self, dev: _Device, sign: int) -> None:
        """Add (+1) or take away (-1) ``dev`` in the counts of its district and asset type."""
        key = (dev.district, dev.asset_type)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
        cell.devices += sign
        if dev.status == "online":
            cell.online += sign
        elif dev.status == "offline":
            cell.offline += sign
        if dev.stale:
            cell.stale += sign
        if cell.devices == 0:
            del self._cells[key]

    def _add(self, device_id: str, dev: _Device) -> None:
        self._devices[device_id] = dev
        self._count(dev, 1)
        insort(self._order, device_id)
        insort(self._district_order.setdefault(dev.district, []), device_id)

    def _remove(self, device_id: str) -> None:
        dev = self._devices.pop(device_id)
        self._count(dev, -1)
        _discard_sorted(self._order, device_id)
        self._leave_district(device_id, dev.district)
        self._dirty.discard(device_id)
        if self._flushing is not None:
            self._flushing.discard(device_id)
        self._captured.pop(device_id, None)
        self._with_pending.discard(device_id)

    def _leave_district(self, device_id: str, district: str) -> None:
        ids = self._district_order.get(district)
        if ids is not None:
            _discard_sorted(ids, device_id)
            if not ids:
                del self._district_order[district]

    def _place(self, device_id: str, dev: _Device, district: str, asset_type: str) -> None:
        """Move ``dev`` to ``district``/``asset_type`` (provisioning), keeping the indexes."""
        if (district, asset_type) == (dev.district, dev.asset_type):
            return
        self._count(dev, -1)
        if district != dev.district:
            self._leave_district(device_id, dev.district)
            insort(self._district_order.setdefault(district, []), device_id)
        dev.district, dev.asset_type = district, asset_type
        self._count(dev, 1)

    # ------------------------------------------------------------------ status

    def apply_statuses(self, statuses: Sequence[StatusUpdate]) -> None:
        """Online/offline from births and last wills; a status older than the current one loses."""
        for st in statuses:
            dev = self._devices.get(st.device_id)
            if dev is None:
                dev = _Device(st.district, st.asset_type, self._clock.now_ms())
                self._add(st.device_id, dev)
            if dev.status_ts is not None and st.ts_ms < dev.status_ts:
                continue
            if self._flushing is not None and st.device_id in self._flushing:
                self._keep_for_flush(st.device_id, dev)
            dev.status_ts = st.ts_ms
            self._dirty.add(st.device_id)
            if dev.status != st.state:
                self._count(dev, -1)
                dev.status = st.state
                self._count(dev, 1)
                self._emit(st.device_id, dev, st.state, st.ts_ms)

    def is_provisioned(self, device_id: str) -> bool:
        """True when ``device_id`` was provisioned (imported or created by an admin)."""
        dev = self._devices.get(device_id)
        return dev is not None and dev.provisioned

    def claim(self, device_id: str, district: str, asset_type: str) -> tuple[str, str] | None:
        """Ingest's check of a message's topic against the registry, before the journal.

        Returns None when ``device_id`` may publish as ``district``/``asset_type``: it
        is registered there, or it is new (then it is registered there now, so that
        the first topic a new device uses is its place, even for messages still on
        their way to the live stage). Otherwise returns the ``(district, asset_type)``
        it is registered at, and the message must be refused (``device_mismatch``).
        """
        dev = self._devices.get(device_id)
        if dev is None:
            self._add(device_id, _Device(district, asset_type, self._clock.now_ms()))
            return None
        if dev.district == district and dev.asset_type == asset_type:
            return None
        return dev.district, dev.asset_type

    def tick(self, now_ms: int) -> None:
        """Timer work: stale detection, confirming old gaps, provisioning made elsewhere."""
        generation = self._read_generation()
        if generation != self._generation:
            self._generation = generation
            self._reload_provisioning()
        # Staleness takes minutes (STALE_INTERVALS expected intervals), so each tick
        # looks at a slice of the devices, in turn: a scan of all 10,000 every
        # second held the event loop ~10 ms each time.
        interval_cache: dict[str, float | None] = {}
        order = self._order
        start = self._scan_pos if self._scan_pos < len(order) else 0
        end = start + STALE_SCAN_PER_TICK
        self._scan_pos = end
        for device_id in order[start:end]:
            dev = self._devices[device_id]
            asset_type = dev.asset_type
            if asset_type not in interval_cache:
                interval_cache[asset_type] = self._expected_interval_s(asset_type)
            interval = interval_cache[asset_type]
            if interval is not None and interval > 0:
                since = dev.last_seen if dev.last_seen is not None else dev.created_ms
                stale = now_ms - since > STALE_INTERVALS * interval * 1000
                if stale != dev.stale:
                    self._count(dev, -1)
                    dev.stale = stale
                    self._count(dev, 1)
                    self._emit(device_id, dev, "stale" if stale else dev.status, now_ms)
        counts = {"online": 0, "offline": 0, "unknown": 0, "stale": 0}
        for cell in self._cells.values():
            counts["online"] += cell.online
            counts["offline"] += cell.offline
            counts["unknown"] += cell.devices - cell.online - cell.offline
            counts["stale"] += cell.stale
        for status, count in counts.items():
            metrics.DEVICES.labels(status=status).set(count)
        for device_id in list(self._with_pending):
            pending_dev = self._devices.get(device_id)
            if pending_dev is None:
                self._with_pending.discard(device_id)
                continue
            expired = [s for s, t in pending_dev.pending.items() if now_ms - t >= GAP_GRACE_MS]
            if expired:
                if self._flushing is not None and device_id in self._flushing:
                    self._keep_for_flush(device_id, pending_dev)
                for s in expired:
                    del pending_dev.pending[s]
                self._confirm(pending_dev, len(expired))
                self._dirty.add(device_id)
            if not pending_dev.pending:
                self._with_pending.discard(device_id)

    def _emit(self, device_id: str, dev: _Device, status: str, ts_ms: int) -> None:
        if self._on_status_change is None:
            return
        event = DeviceStatusEvent(device_id, dev.district, dev.asset_type, status, ts_ms)
        try:
            self._on_status_change(event)
        except Exception as exc:  # a broken listener must not stop the registry
            log.exception("status listener failed", device_id=device_id, error=repr(exc))

    # ------------------------------------------------------------------ persistence

    def flush(self) -> None:
        """Persist every device changed since the last flush, in one transaction."""
        self._write(self._take_dirty(), self._conn)

    def begin_flush(self) -> None:
        """Capture the state :meth:`flush_async` writes: every device changed until
        now, as it is now (a device that changes before it is written is copied
        first). The live stage calls this at its checkpoint's journal offset."""
        if self._flushing is None:
            self._flushing = self._take_dirty()
            self._captured = {}

    async def flush_async(self, pause: Callable[[], Awaitable[None]] | None = None) -> None:
        """Write what :meth:`begin_flush` captured (begun now if it was not), in a
        worker thread, so the event loop is not held up.

        Rows are built on the loop and written by the thread in chunks of
        :data:`FLUSH_CHUNK` devices, with ``pause()`` (default: a short sleep)
        between them: 10,000 changed devices at once held the loop ~150 ms. The
        devices are written as they were at :meth:`begin_flush`, so the registry
        matches the checkpoint's offset and a replay after a crash counts nothing
        twice. Without a ``flush_conn`` this is the blocking flush.
        """
        if self._flush_conn is None:
            self._flushing = None
            self.flush()
            return
        self.begin_flush()
        todo, captured = self._flushing, self._captured
        assert todo is not None
        ids = [*captured, *todo]
        written = 0
        try:
            while written < len(ids):
                if written:
                    await (pause() if pause is not None else asyncio.sleep(FLUSH_PAUSE_S))
                part = ids[written : written + FLUSH_CHUNK]
                rows = []
                for device_id in part:
                    row = captured.pop(device_id, None)
                    if row is None and device_id in todo:
                        dev = self._devices.get(device_id)
                        row = _row(device_id, dev) if dev is not None else None
                    todo.discard(device_id)
                    if row is not None:
                        rows.append(row)
                await asyncio.to_thread(_write_rows, rows, self._flush_conn)
                written += len(part)
        except BaseException:
            self._dirty.update(ids[written:])  # written next time
            raise
        finally:
            self._flushing, self._captured = None, {}
        # A device deleted through the API while the thread wrote may have been
        # written back: delete it again, here on the loop, after the write.
        gone = [(d,) for d in ids if d not in self._devices]
        if gone:
            with _transaction(self._conn):
                self._conn.executemany("DELETE FROM registry_devices WHERE device_id = ?", gone)

    def _keep_for_flush(self, device_id: str, dev: _Device) -> None:
        """``device_id`` is about to change: copy the row the flush under way writes."""
        assert self._flushing is not None
        self._flushing.discard(device_id)
        self._captured[device_id] = _row(device_id, dev)

    def _take_dirty(self) -> set[str]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    def _write(self, dirty: set[str], conn: sqlite3.Connection) -> None:
        rows = [_row(d, dev) for d in dirty if (dev := self._devices.get(d)) is not None]
        _write_rows(rows, conn)

    def _load(self) -> None:
        for row in self._conn.execute("SELECT * FROM registry_devices"):
            dev = _Device(row["district"], row["asset_type"], row["created_ms"])
            self._set_provisioning(row["device_id"], dev, row)
            dev.status = row["status"]
            dev.status_ts = row["status_ts_ms"]
            dev.last_seen = row["last_seen_ms"]
            dev.latest = json.loads(row["latest"])
            dev.latest_ts = {k: int(v) for k, v in json.loads(row["latest_ts"]).items()}
            dev.max_ts = max(dev.latest_ts.values(), default=-1)
            dev.load_seq(row["seq"])
            self._devices[row["device_id"]] = dev
            self._count(dev, 1)
            if dev.pending:
                self._with_pending.add(row["device_id"])
        # Sorted once here: inserting one by one into a growing list is quadratic.
        self._order = sorted(self._devices)
        for device_id in self._order:
            district = self._devices[device_id].district
            self._district_order.setdefault(district, []).append(device_id)

    def _set_provisioning(self, device_id: str, dev: _Device, row: sqlite3.Row) -> None:
        dev.provisioned = bool(row["provisioned"])
        if dev.provisioned:
            if device_id in self._devices:
                self._place(device_id, dev, row["district"], row["asset_type"])
            else:
                dev.district, dev.asset_type = row["district"], row["asset_type"]
        dev.latitude, dev.longitude = row["latitude"], row["longitude"]
        dev.metadata = json.loads(row["metadata"])
        dev.labels = _labels_of(dev.metadata)

    def _reload_provisioning(self) -> None:
        """Pick up devices imported or deleted by another process (``hub devices import``)."""
        seen: set[str] = set()
        for row in self._conn.execute(
            "SELECT device_id, district, asset_type, provisioned, latitude, longitude,"
            " metadata, created_ms FROM registry_devices"
        ):
            device_id = row["device_id"]
            seen.add(device_id)
            dev = self._devices.get(device_id)
            if dev is None:
                dev = _Device(row["district"], row["asset_type"], row["created_ms"])
                self._set_provisioning(device_id, dev, row)
                self._add(device_id, dev)
            else:
                self._set_provisioning(device_id, dev, row)
        for device_id in [d for d in self._devices if d not in seen]:
            if self._devices[device_id].provisioned:
                self._remove(device_id)

    def _read_generation(self) -> int:
        row = self._conn.execute("SELECT generation FROM registry_generation").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ provisioning

    def upsert_device(
        self,
        device_id: str,
        district: str,
        asset_type: str,
        latitude: float | None,
        longitude: float | None,
        metadata: Mapping[str, Any],
    ) -> DeviceInfo:
        """Provision or update a device; raises ValueError on a bad name or coordinate."""
        row = DeviceRow(
            device_id=_checked(device_id, DEVICE_ID_RE, "device_id"),
            district=_checked(district, DISTRICT_RE, "district"),
            asset_type=_checked(asset_type, ASSET_TYPE_RE, "asset_type"),
            latitude=_checked_coordinate(latitude, "latitude", 90.0),
            longitude=_checked_coordinate(longitude, "longitude", 180.0),
            metadata=dict(metadata),
            line=0,
        )
        if (row.latitude is None) != (row.longitude is None):
            raise ValueError("latitude and longitude: give both or neither")
        json.dumps(row.metadata)  # refuse what cannot be stored, before storing anything
        with _transaction(self._conn):
            self._write_provisioned([row])
        info = self.get_device(device_id)
        assert info is not None
        return info

    def delete_device(self, device_id: str) -> bool:
        """Remove a device and its state; False when unknown."""
        if device_id not in self._devices:
            return False
        with _transaction(self._conn):
            self._conn.execute("DELETE FROM registry_devices WHERE device_id = ?", (device_id,))
            self._bump_generation()
        self._remove(device_id)
        return True

    def import_file(self, path: Path) -> ImportReport:
        """Provision every device of a CSV or YAML file, or none if any row is invalid."""
        parsed = parse_import_file(path, self._known_asset_type)
        if parsed.problems:
            return ImportReport(path, problems=parsed.problems)
        created = sum(1 for r in parsed.rows if r.device_id not in self._devices)
        with _transaction(self._conn):
            self._write_provisioned(parsed.rows)
        log.info("devices imported", path=str(path), created=created)
        return ImportReport(path, created=created, updated=len(parsed.rows) - created)

    def _known_asset_type(self, asset_type: str) -> bool:
        return self._expected_interval_s(asset_type) is not None

    def _write_provisioned(self, rows: Sequence[DeviceRow]) -> None:
        """Write provisioning rows inside the caller's transaction, then mirror them in memory."""
        now = self._clock.now_ms()
        self._conn.executemany(
            "INSERT INTO registry_devices (device_id, district, asset_type, provisioned,"
            " latitude, longitude, metadata, created_ms) VALUES (?, ?, ?, 1, ?, ?, ?, ?)"
            " ON CONFLICT(device_id) DO UPDATE SET district = excluded.district,"
            " asset_type = excluded.asset_type, provisioned = 1, latitude = excluded.latitude,"
            " longitude = excluded.longitude, metadata = excluded.metadata",
            [
                (
                    r.device_id,
                    r.district,
                    r.asset_type,
                    r.latitude,
                    r.longitude,
                    json.dumps(r.metadata, separators=(",", ":"), default=str),
                    now,
                )
                for r in rows
            ],
        )
        self._bump_generation()
        for r in rows:
            dev = self._devices.get(r.device_id)
            if dev is None:
                dev = _Device(r.district, r.asset_type, now)
                self._add(r.device_id, dev)
            else:
                self._place(r.device_id, dev, r.district, r.asset_type)
            dev.provisioned = True
            dev.latitude, dev.longitude = r.latitude, r.longitude
            dev.metadata = json.loads(json.dumps(r.metadata, default=str))
            dev.labels = _labels_of(dev.metadata)

    def _bump_generation(self) -> None:
        self._conn.execute("UPDATE registry_generation SET generation = generation + 1")
        self._generation = self._read_generation()

    # ------------------------------------------------------------------ reads

    def location(self, device_id: str) -> tuple[float, float] | None:
        """(latitude, longitude) of a provisioned device, or None."""
        dev = self._devices.get(device_id)
        if dev is None or dev.latitude is None or dev.longitude is None:
            return None
        return dev.latitude, dev.longitude

    def labels(self, device_id: str) -> Mapping[str, str]:
        """Labels for rules' ``match.labels``: the device's scalar metadata entries, as text."""
        dev = self._devices.get(device_id)
        return _NO_LABELS if dev is None else dev.labels

    @property
    def generation(self) -> int:
        """Provisioning version: changes whenever devices are provisioned, changed or deleted."""
        return self._generation

    def get_device(self, device_id: str) -> DeviceInfo | None:
        """One device, or None."""
        dev = self._devices.get(device_id)
        return None if dev is None else _info(device_id, dev)

    def list_devices(self, flt: DeviceFilter, scope: Scope) -> list[DeviceInfo]:
        """Devices matching ``flt`` inside ``scope``, sorted by id."""
        devices = self._devices
        if flt.district is None:
            ids = self._order
        elif scope.districts is not None and flt.district not in scope.districts:
            return []
        else:
            ids = self._district_order.get(flt.district, [])
        if (
            flt.asset_type is None
            and flt.status is None
            and flt.stale is None
            and scope.asset_types is None
            and (scope.districts is None or flt.district is not None)
        ):
            # Nothing left to filter: the page is a slice of the sorted ids.
            page = ids[max(0, flt.offset) : max(0, flt.offset) + max(0, flt.limit)]
            return [_info(device_id, devices[device_id]) for device_id in page]
        out: list[DeviceInfo] = []
        skipped = 0
        for device_id in ids:
            dev = devices[device_id]
            if not scope.allows(dev.district, dev.asset_type):
                continue
            if flt.district is not None and dev.district != flt.district:
                continue
            if flt.asset_type is not None and dev.asset_type != flt.asset_type:
                continue
            if flt.status is not None and dev.status != flt.status:
                continue
            if flt.stale is not None and dev.stale != flt.stale:
                continue
            if skipped < flt.offset:
                skipped += 1
                continue
            if len(out) >= flt.limit:
                break
            out.append(_info(device_id, dev))
        return out

    def districts(self, scope: Scope) -> list[str]:
        """Districts that have devices, inside ``scope``."""
        return sorted({d for d, a in self._cells if scope.allows(d, a)})

    def device_counts(
        self, scope: Scope, district: str | None = None
    ) -> dict[tuple[str, str], DeviceCounts]:
        """Device counts per (district, asset type) inside ``scope`` (one district if given)."""
        return {
            (d, a): DeviceCounts(c.devices, c.online, c.offline, c.stale)
            for (d, a), c in self._cells.items()
            if (district is None or d == district) and scope.allows(d, a)
        }

    def __len__(self) -> int:
        return len(self._devices)


def _info(device_id: str, dev: _Device) -> DeviceInfo:
    return DeviceInfo(
        device_id=device_id,
        district=dev.district,
        asset_type=dev.asset_type,
        status=dev.status,
        last_seen_ms=dev.last_seen,
        latest=dict(dev.latest),
        latest_ts_ms=dev.max_ts if dev.max_ts >= 0 else None,
        stale=dev.stale,
        seq_gaps=dev.gaps + len(dev.pending),
        seq_duplicates=dev.dups,
        latitude=dev.latitude,
        longitude=dev.longitude,
        provisioned=dev.provisioned,
        metadata=dict(dev.metadata),
        created_ms=dev.created_ms,
    )


def _labels_of(metadata: Mapping[str, Any]) -> Mapping[str, str]:
    """Labels from metadata: scalar entries as text (``true``/``false`` for booleans)."""
    # Computed once per provisioning change, so rule matching only ever looks it up.
    labels: dict[str, str] = {}
    for key, value in metadata.items():
        if isinstance(value, bool):
            labels[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            labels[key] = str(value)
    return MappingProxyType(labels) if labels else _NO_LABELS


def _discard_sorted(ids: list[str], device_id: str) -> None:
    """Remove ``device_id`` from the sorted list ``ids`` if present."""
    at = bisect_left(ids, device_id)
    if at < len(ids) and ids[at] == device_id:
        del ids[at]


def _checked(value: str, pattern: Any, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{what}: {value!r} does not match {pattern.pattern}")
    return value


def _checked_coordinate(value: float | None, what: str, limit: float) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not -limit <= number <= limit:
        raise ValueError(f"{what}: {value!r} is outside -{limit:g}..{limit:g}")
    return number


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
