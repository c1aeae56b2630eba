"""Response figures: time to acknowledge and time to resolve, grouped by district,
asset type and severity (count, median, 90th percentile), for the city's indicators."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from hub.ports import AlertRecord


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


def _stats(alerts: Sequence[AlertRecord]) -> dict[str, Any]:
    tta = [
        (a.acknowledged_ms - a.started_ms) / 1000 for a in alerts if a.acknowledged_ms is not None
    ]
    ttr = [(a.resolved_ms - a.started_ms) / 1000 for a in alerts if a.resolved_ms is not None]
    return {
        "count": len(alerts),
        "acknowledged": len(tta),
        "resolved": len(ttr),
        "time_to_acknowledge_s": {"median": median(tta), "p90": percentile(tta, 90)},
        "time_to_resolve_s": {"median": median(ttr), "p90": percentile(ttr, 90)},
    }


def response_figures(alerts: Iterable[AlertRecord]) -> dict[str, Any]:
    """Figures overall and per district, asset type and severity."""
    items = list(alerts)
    out: dict[str, Any] = {"overall": _stats(items)}
    for dim in ("district", "asset_type", "severity"):
        groups: dict[str, list[AlertRecord]] = {}
        for a in items:
            groups.setdefault(getattr(a, dim), []).append(a)
        out[f"by_{dim}"] = {k: _stats(v) for k, v in sorted(groups.items())}
    return out
