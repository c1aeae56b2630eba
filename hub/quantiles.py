"""Medians and percentiles of small samples, as the hub reports them everywhere.

One definition for the alert response figures and the indicators: the median is
the mean of the middle two values of an even count; any other percentile is the
nearest rank (the smallest value with at least ``q`` % of the sample at or below
it), so it is always a value that occurred.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    """The median (mean of the middle two for an even count); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def quantile(values: Sequence[float], q: float) -> float | None:
    """The median for ``q == 50``, else the nearest-rank percentile."""
    return median(values) if q == 50 else percentile(values, q)
