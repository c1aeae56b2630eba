"""Where indicator roll-ups live: the port, and the records that cross it.

The updater, the rebuild and the queries reach their state only through
:class:`IndicatorStore` (SQLite now, :mod:`hub.indicators.sqlite_store`; PostgreSQL
can follow behind the same protocol, as for alerts and the registry). Writes go
through one transaction at a time (:class:`IndicatorTxn`), so the incremental
updater of a running hub and a ``hub indicators rebuild`` never leave a district's
sums out of step with the hours they add up: each replaces hour rows and applies
the difference to the day sums in the same transaction, reading the old row there.

Tables (all keyed by plain columns; values that are sets or maps are JSON text):

* devices: the commissioning of each device (first seen or provisioned, retired);
* statuses: the devices' ``online``/``offline`` messages (availability);
* device-hours: :class:`hub.indicators.rollup.HourState` and its figures;
* device-days and district-days (district × asset type × local day): additive sums;
* arrivals per district-day: readings accepted and rejected (by reason), and the
  histogram of delays (arrival − ``ts``);
* expected slots per district-day, cached for closed days;
* meta: small facts (the updater's heartbeat, the maintenance fingerprint).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from hub.indicators.rollup import HourFigures, HourState, Totals

#: Delay histogram bucket upper edges, in seconds; one more bucket holds the rest.
#: A delay quantile is reported as the upper edge of the bucket it falls in.
DELAY_EDGES_S: tuple[float, ...] = (
    0.5,
    1,
    2,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    30 * 86400,
)
DELAY_BUCKETS = len(DELAY_EDGES_S) + 1

GroupKey = tuple[str, str, int]  # district, asset type, day
DeviceDayKey = tuple[str, int]  # device id, day
HourKey = tuple[str, int]  # device id, hour


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as the indicators see it: where it is and since when it counts."""

    device_id: str
    district: str
    asset_type: str
    commissioned_ms: int
    retired_ms: int | None = None


@dataclass(slots=True)
class StoredHour:
    """A device-hour as stored: its raw state and the figures last derived from it."""

    state: HourState
    figures: HourFigures


@dataclass(frozen=True, slots=True)
class DayRow:
    """Sums of one device-day (``device_id`` set) or one district-day."""

    district: str
    asset_type: str
    day_ms: int
    totals: Totals
    device_id: str | None = None


@dataclass(slots=True)
class Arrivals:
    """Per district-day: readings accepted and rejected by reason (by arrival day),
    and the delay histogram (by the readings' ``ts`` day)."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    delays: list[int] = field(default_factory=lambda: [0] * DELAY_BUCKETS)

    def add(self, other: Arrivals) -> None:
        """Add ``other``'s counts."""
        self.accepted += other.accepted
        for reason, n in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        for i, n in enumerate(other.delays):
            self.delays[i] += n


class IndicatorTxn(Protocol):
    """One write transaction."""

    def hour(self, key: HourKey) -> StoredHour | None:
        """The stored device-hour, or None."""
        ...

    def hour_before(self, device_id: str, hour_ms: int) -> StoredHour | None:
        """The nearest stored hour of the device before ``hour_ms``."""
        ...

    def hour_after(self, device_id: str, hour_ms: int) -> StoredHour | None:
        """The nearest stored hour of the device after ``hour_ms``."""
        ...

    def put_hour(self, row: StoredHour) -> None:
        """Insert or replace a device-hour."""
        ...

    def delete_hour(self, key: HourKey) -> None:
        """Remove a device-hour."""
        ...

    def add_days(
        self,
        device_deltas: Mapping[DeviceDayKey, tuple[str, str, Totals]],
        group_deltas: Mapping[GroupKey, Totals],
    ) -> None:
        """Add deltas to device-days and district-days (rows created as needed)."""
        ...

    def add_arrivals(self, arrivals: Mapping[GroupKey, Arrivals]) -> None:
        """Add arrival counts to district-days."""
        ...

    def put_devices(self, devices: Sequence[DeviceRecord]) -> None:
        """Insert or replace device records."""
        ...

    def add_statuses(self, events: Sequence[tuple[str, int, str]]) -> None:
        """Record ``(device_id, ts_ms, state)`` status messages (duplicates ignored)."""
        ...

    def put_expected(self, day_ms: int, slots: Mapping[tuple[str, str], int]) -> None:
        """Cache the expected slots of every district and asset type for one closed day."""
        ...

    def drop_expected(self, start_ms: int, end_ms: int) -> None:
        """Forget cached expected slots of the days starting in ``[start_ms, end_ms)``."""
        ...

    def cached_days(self, start_ms: int, end_ms: int) -> set[int]:
        """Days starting in ``[start_ms, end_ms)`` whose expected slots are cached."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value."""
        ...

    def meta(self, key: str) -> str | None:
        """A meta value (as this transaction sees it), or None."""
        ...


class IndicatorStore(Protocol):
    """Roll-up state: one writer transaction at a time, reads any time."""

    def transaction(self) -> AbstractContextManager[IndicatorTxn]:
        """A write transaction (committed on exit, rolled back on error)."""
        ...

    def load_hour(self, key: HourKey) -> StoredHour | None:
        """One device-hour (for the hot path: a late reading of an hour not in memory)."""
        ...

    def hours(
        self, start_ms: int, end_ms: int, device_ids: Sequence[str] | None = None
    ) -> Iterator[StoredHour]:
        """Device-hours in ``[start_ms, end_ms)``, by device then hour."""
        ...

    def devices(self) -> list[DeviceRecord]:
        """Every device record."""
        ...

    def statuses(self, since_ms: int) -> list[tuple[str, int, str]]:
        """Status messages from ``since_ms`` on, by device then time."""
        ...

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
        ...

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
        ...

    def arrivals(
        self,
        start_ms: int,
        end_ms: int,
        districts: Sequence[str] | None = None,
        asset_types: Sequence[str] | None = None,
    ) -> dict[GroupKey, Arrivals]:
        """Arrival counts of days starting in ``[start_ms, end_ms)``."""
        ...

    def expected(self, start_ms: int, end_ms: int) -> dict[int, dict[tuple[str, str], int]]:
        """Cached expected slots: day -> (district, asset type) -> slots (closed days only;
        a day absent from the answer is not cached)."""
        ...

    def meta(self, key: str) -> str | None:
        """A meta value, or None."""
        ...

    def prune(self, hours_before_ms: int, days_before_ms: int) -> int:
        """Drop device-hours before ``hours_before_ms`` and device-days before
        ``days_before_ms`` (district-days are kept); returns rows removed."""
        ...

    def close(self) -> None:
        """Close connections."""
        ...
