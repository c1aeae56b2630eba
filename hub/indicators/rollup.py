"""The roll-up model: what one device's readings of one local hour leave behind, and
the figures derived from it. Pure functions and plain data; no I/O.

**The raw state of a device-hour** (:class:`HourState`) is a merge of readings that
gives the same result in any order and when a reading comes twice (a QoS 1
redelivery, a journal replay after a crash, a backfill of data already sent):

* ``bits``: the slots of the declared interval (:mod:`hub.indicators.periods`) that
  received at least one reading, a bit per slot;
* ``runs``: the ``seq`` numbers received, as sorted ``[first, last]`` runs;
* ``stats``: for the metrics domain indicators use, the count, sum and maximum of
  the values of the first reading of each slot (a further reading in a slot that
  already has one counts in ``extra`` only, so a device reporting faster than it
  declared is measured at its declared interval). Values flagged out of range by
  the catalog are left out: they are a sensor fault, not the city's air or river;
* ``checks``: for ``hours_ok`` indicators, readings that met ``when`` and those of
  them that failed ``ok``.

**Derived figures** (:class:`HourFigures`) come from the raw state, the end of the
hour before (availability and seq loss look back across the hour's start) and the
slots a maintenance window or an ``offline`` status covers:

* ``received``: slots with a reading, maintenance slots left out;
* ``up``: slots in which the device was up: it delivered a reading in that slot or
  in one of the :data:`UP_GRACE_SLOTS` − 1 before it (the registry's stale rule:
  stale after 3 intervals of silence), and the last status message at the slot's
  start did not say ``offline``;
* ``seq_n``, ``seq_lost``: seq numbers received, and numbers missing between them and
  since the last one of an earlier hour; a jump of more than :data:`SEQ_GAP_MAX` or a
  step back is taken as a counter restart, not a loss;
* ``domain``: ``n``/``s`` per metric (count and sum), ``h`` per ``hours_above``
  indicator (1 when the hour's maximum exceeded the threshold), ``c`` per
  ``hours_ok`` indicator (``[counted, ok]``: the hour had readings meeting ``when``;
  all of them met ``ok``).

Figures are additive: a device-day is the sum of its hours, a district-day the sum of
its devices' days, which is what makes the incremental update a matter of deltas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.indicators.definitions import HoursOk

#: A slot counts as up while a reading arrived in it or in the slots just before it:
#: this many slots in all (the registry marks a device stale after 3 silent intervals).
UP_GRACE_SLOTS = 3
#: A seq jump larger than this (or a step back) is a counter restart, not a loss
#: (the registry's SEQ_WINDOW: the reordering it still accounts for).
SEQ_GAP_MAX = 1024
#: At most this many separate seq runs are kept per device-hour (a device sending
#: random numbers must not grow its row without bound); further numbers are not
#: accounted.
MAX_RUNS = 512

Runs = list[list[int]]
Domain = dict[str, dict[str, Any]]


@dataclass(slots=True)
class HourState:
    """The mergeable raw state of one device in one local hour."""

    device_id: str
    district: str
    asset_type: str
    hour_ms: int
    day_ms: int
    interval_ms: int
    #: Index (within the day) of the first slot starting in this hour, and how many do.
    first_slot: int
    n_slots: int
    bits: int = 0
    extra: int = 0
    runs: Runs = field(default_factory=list)
    stats: dict[str, list[float]] = field(default_factory=dict)
    checks: dict[str, list[int]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        """``(device_id, hour_ms)``."""
        return self.device_id, self.hour_ms

    def copy(self) -> HourState:
        """A deep copy (the flush writes copies while the hot path goes on)."""
        return HourState(
            self.device_id,
            self.district,
            self.asset_type,
            self.hour_ms,
            self.day_ms,
            self.interval_ms,
            self.first_slot,
            self.n_slots,
            self.bits,
            self.extra,
            [list(r) for r in self.runs],
            {k: list(v) for k, v in self.stats.items()},
            {k: list(v) for k, v in self.checks.items()},
        )


@dataclass(frozen=True, slots=True)
class HourFigures:
    """Derived, additive figures of one device-hour."""

    received: int = 0
    up: int = 0
    seq_n: int = 0
    seq_lost: int = 0
    domain: Domain = field(default_factory=dict)
    #: How many leading slots of the next hour this hour keeps up (availability).
    carry: int = 0
    #: The last seq number of this hour (None without any).
    seq_last: int | None = None


ZERO = HourFigures()


# --------------------------------------------------------------------------- merging


def add_seq(runs: Runs, seq: int) -> None:
    """Add ``seq`` to sorted, disjoint, non-adjacent ``runs`` (in place)."""
    lo, hi = 0, len(runs)
    while lo < hi:  # first run whose end >= seq - 1
        mid = (lo + hi) // 2
        if runs[mid][1] < seq - 1:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(runs):
        run = runs[lo]
        if run[0] <= seq <= run[1]:
            return
        if run[1] == seq - 1:
            run[1] = seq
            if lo + 1 < len(runs) and runs[lo + 1][0] == seq + 1:
                run[1] = runs[lo + 1][1]
                del runs[lo + 1]
            return
        if run[0] == seq + 1:
            run[0] = seq
            return
    if len(runs) < MAX_RUNS:
        runs.insert(lo, [seq, seq])


# --------------------------------------------------------------------------- masks


def interval_mask(
    intervals: Iterable[tuple[int, int]], state_day_ms: int, interval_ms: int, first: int, n: int
) -> int:
    """Bits of this hour's slots whose start lies in one of ``intervals`` (``[a, b)``)."""
    mask = 0
    for a, b in intervals:
        k_lo = max(first, -((state_day_ms - a) // interval_ms))
        k_hi = min(first + n, -((state_day_ms - b) // interval_ms))
        if k_hi > k_lo:
            mask |= ((1 << (k_hi - k_lo)) - 1) << (k_lo - first)
    return mask


def offline_intervals(events: Sequence[tuple[int, str]]) -> list[tuple[int, int]]:
    """``[offline ts, next online ts)`` spans of sorted status ``events`` (open ends are
    closed far in the future)."""
    out: list[tuple[int, int]] = []
    since: int | None = None
    for ts, state in events:
        if state == "offline":
            if since is None:
                since = ts
        elif since is not None:
            out.append((since, ts))
            since = None
    if since is not None:
        out.append((since, 2**62))
    return out


# --------------------------------------------------------------------------- deriving


def derive(
    state: HourState,
    *,
    carry_in: int = 0,
    prev_seq_last: int | None = None,
    maintenance: int = 0,
    offline: int = 0,
    thresholds: Mapping[str, tuple[str, float]] | None = None,
    horizon: int | None = None,
) -> HourFigures:
    """The figures of one device-hour (see the module docstring).

    ``carry_in``: leading slots kept up by the hours before (their ``carry``);
    ``prev_seq_last``: the last seq of the nearest earlier hour with any;
    ``maintenance``/``offline``: masks of slots (``interval_mask``); ``thresholds``:
    ``hours_above`` indicator id -> (metric, threshold) for this asset type;
    ``horizon``: only the first this many slots have begun (the hour in progress), the
    others count neither as received nor as up yet.
    """
    n = state.n_slots
    full = (1 << n) - 1
    bits = state.bits & full
    begun = full if horizon is None else (1 << max(0, min(horizon, n))) - 1
    counted = begun & ~maintenance
    received = (bits & counted).bit_count()
    covered = bits
    for shift in range(1, UP_GRACE_SLOTS):
        covered |= bits << shift
    covered |= (1 << min(carry_in, n)) - 1
    up = (covered & counted & ~offline & full).bit_count()
    last = bits.bit_length() - 1  # -1 without readings
    eff_last = max(last, carry_in - UP_GRACE_SLOTS)
    carry = max(0, eff_last + UP_GRACE_SLOTS - n)

    seq_n = 0
    seq_lost = 0
    before = prev_seq_last
    for first, last_seq in state.runs:
        seq_n += last_seq - first + 1
        if before is not None:
            gap = first - before - 1
            if 0 < gap <= SEQ_GAP_MAX:
                seq_lost += gap
        before = last_seq
    seq_last = state.runs[-1][1] if state.runs else prev_seq_last

    domain: Domain = {}
    if state.stats:
        domain["n"] = {m: v[0] for m, v in state.stats.items()}
        domain["s"] = {m: v[1] for m, v in state.stats.items()}
    if thresholds:
        above = {
            ind: 1
            for ind, (metric, threshold) in thresholds.items()
            if metric in state.stats
            and state.stats[metric][0] > 0
            and state.stats[metric][2] > threshold
        }
        if above:
            domain["h"] = above
    if state.checks:
        domain["c"] = {
            ind: [1, 1 if bad == 0 else 0] for ind, (when, bad) in state.checks.items() if when > 0
        }
        if not domain["c"]:
            del domain["c"]
    return HourFigures(received, up, seq_n, seq_lost, domain, carry, seq_last)


def check_reading(
    checks: dict[str, list[int]],
    definitions: Sequence[tuple[str, HoursOk]],
    metrics: Mapping[str, float | int | bool],
) -> None:
    """Count one reading into the ``hours_ok`` checks of its asset type."""
    for ind, m in definitions:
        when = m.when
        if when is not None:
            v = metrics.get(when.metric)
            if v is None or not when.holds(v):
                continue
        ok_value = metrics.get(m.ok.metric)
        if ok_value is None:
            continue
        c = checks.get(ind)
        if c is None:
            c = checks[ind] = [0, 0]
        c[0] += 1
        if not m.ok.holds(ok_value):
            c[1] += 1


# --------------------------------------------------------------------------- additive sums


@dataclass(slots=True)
class Totals:
    """Sums of figures: of a device-day, a district-day, or a period."""

    received: int = 0
    up: int = 0
    seq_n: int = 0
    seq_lost: int = 0
    domain: Domain = field(default_factory=dict)

    def add(self, f: HourFigures | Totals, sign: int = 1) -> None:
        """Add (or with ``sign=-1`` take away) ``f``."""
        self.received += sign * f.received
        self.up += sign * f.up
        self.seq_n += sign * f.seq_n
        self.seq_lost += sign * f.seq_lost
        add_domain(self.domain, f.domain, sign)

    def is_zero(self) -> bool:
        """True when nothing is counted (a delta that changes nothing)."""
        return not (self.received or self.up or self.seq_n or self.seq_lost) and not any(
            self.domain.values()
        )


def add_domain(into: Domain, other: Mapping[str, Mapping[str, Any]], sign: int = 1) -> None:
    """Add ``other``'s domain sums into ``into`` (``c`` holds pairs)."""
    for part, values in other.items():
        target = into.setdefault(part, {})
        for name, value in values.items():
            if part == "c":
                cur = target.get(name, [0, 0])
                new = [cur[0] + sign * value[0], cur[1] + sign * value[1]]
                if new == [0, 0]:
                    target.pop(name, None)
                else:
                    target[name] = new
            else:
                total = target.get(name, 0) + sign * value
                if total == 0 and part != "s":
                    target.pop(name, None)
                else:
                    target[name] = total
        if not target:
            del into[part]


# --------------------------------------------------------------------------- expected


def subtract(span: tuple[int, int], holes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``span`` without the ``holes`` (each ``[a, b)``), as sorted disjoint spans."""
    out = [span]
    for a, b in sorted(holes):
        nxt: list[tuple[int, int]] = []
        for lo, hi in out:
            if b <= lo or a >= hi:
                nxt.append((lo, hi))
                continue
            if a > lo:
                nxt.append((lo, a))
            if b < hi:
                nxt.append((b, hi))
        out = nxt
    return out
