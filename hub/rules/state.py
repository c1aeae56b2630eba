"""Per-series rule state: small, slotted, bounded, and serialisable for restarts."""

from __future__ import annotations

import base64
from array import array
from bisect import bisect_left
from typing import Any

INACTIVE = 0
PENDING = 1
FIRING = 2
STATE_NAMES = ("inactive", "pending", "firing")


class Series:
    """Lifecycle of one rule for one source (a device, or ``_area`` of a district).

    ``dev`` is the shared ``(district, asset_type, source)`` tuple; ``since`` is
    when the state was entered, ``clear_since`` when a firing condition went
    clear (-1: it has not), ``last_ts`` the newest reading time evaluated,
    ``value`` the last observed (derived) value, ``aux`` the kind's own bounded state.
    """

    __slots__ = ("aux", "clear_since", "dev", "last_ts", "since", "state", "value")

    def __init__(self, dev: tuple[str, str, str], aux: Any) -> None:
        self.dev = dev
        self.state = INACTIVE
        self.since = -1
        self.clear_since = -1
        self.last_ts = -1
        self.value = 0.0
        self.aux = aux

    def dump(self, aux: Any) -> tuple[Any, ...]:
        """JSON-able form (``aux`` already converted by the kind; tuples encode as arrays)."""
        return (self.dev, self.state, self.since, self.clear_since, self.last_ts, self.value, aux)

    @classmethod
    def load(cls, data: list[Any], aux: Any) -> Series:
        """Inverse of :meth:`dump`."""
        dev = data[0]
        s = cls((str(dev[0]), str(dev[1]), str(dev[2])), aux)
        s.state = int(data[1])
        s.since = int(data[2])
        s.clear_since = int(data[3])
        s.last_ts = int(data[4])
        s.value = float(data[5])
        return s


class Window:
    """Time-ordered samples in two compact float arrays (16 bytes a sample), capped by count."""

    __slots__ = ("start", "ts", "v")

    def __init__(self) -> None:
        self.ts = array("d")
        self.v = array("d")
        self.start = -1  # first sample time ever seen (for warm-up)

    def __len__(self) -> int:
        return len(self.ts)

    def append(self, ts: float, v: float, cap: int) -> None:
        """Add the newest sample; drop the oldest beyond ``cap``."""
        if self.start < 0:
            self.start = int(ts)
        self.ts.append(ts)
        self.v.append(v)
        if len(self.ts) > cap:
            del self.ts[0]
            del self.v[0]

    def insert(self, ts: float, v: float, cap: int) -> None:
        """Add a late sample in time order; drop the oldest beyond ``cap``."""
        i = bisect_left(self.ts, ts)
        self.ts.insert(i, ts)
        self.v.insert(i, v)
        if len(self.ts) > cap:
            del self.ts[0]
            del self.v[0]

    def drop_before(self, cutoff: float) -> None:
        """Forget samples older than ``cutoff``."""
        k = bisect_left(self.ts, cutoff)
        if k:
            del self.ts[:k]
            del self.v[:k]

    def tail(self, n: int) -> tuple[tuple[int, float], ...]:
        """The newest ``n`` samples as ``(ts_ms, value)`` pairs."""
        return tuple((int(t), v) for t, v in zip(self.ts[-n:], self.v[-n:], strict=True))

    def dump(self) -> list[Any]:
        """JSON-able form: the arrays as base64 of their bytes (exact, and fast to write)."""
        return [
            self.start,
            base64.b64encode(self.ts.tobytes()).decode(),
            base64.b64encode(self.v.tobytes()).decode(),
        ]

    @classmethod
    def load(cls, data: Any) -> Window:
        """Inverse of :meth:`dump`."""
        w = cls()
        w.start = int(data[0])
        w.ts = array("d", base64.b64decode(data[1]))
        w.v = array("d", base64.b64decode(data[2]))
        if len(w.ts) != len(w.v):
            raise ValueError("window arrays differ in length")
        return w


__all__ = ["FIRING", "INACTIVE", "PENDING", "STATE_NAMES", "Series", "Window"]
