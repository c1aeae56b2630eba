"""Response figures: time to acknowledge and time to resolve, grouped by district,
asset type and severity (count, median, 90th percentile), for the city's indicators."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hub.ports import AlertRecord
from hub.quantiles import median, percentile


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
