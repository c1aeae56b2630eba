"""Backtests: replay stored history through the same engine and report the alerts."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from hub.messages import Reading, RuleEvent, RuleState
from hub.rules.engine import RuleEngine
from hub.rules.loader import load_rules
from hub.rules.model import RuleModel

#: Timers (no_data, ``for``, ``clear_for``) are checked this often in event time.
TICK_MS = 10_000


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay of history yields: the events, and the rules that matched no series."""

    events: list[RuleEvent]
    unmatched: list[str]


async def replay(
    rules: Sequence[RuleModel],
    history: AsyncIterator[Reading],
    start_ms: int,
    end_ms: int,
    *,
    expected_interval_s: Callable[[str], float | None] | None = None,
    late_tolerance_s: int = 300,
    device_labels: Callable[[str], Mapping[str, str]] | None = None,
) -> Replay:
    """Run ``rules`` over the history in ``[start_ms, end_ms)`` as the live hub would have.

    The engine is ticked on event time every ``TICK_MS`` (and before each
    reading), so ``no_data`` and ``for`` behave as they would have live.
    ``unmatched`` names the enabled ``rules`` no reading of the history matched.
    """
    engine = RuleEngine(
        rules,
        late_tolerance_s=late_tolerance_s,
        expected_interval_s=expected_interval_s or (lambda _asset: None),
        device_labels=device_labels,
    )
    events: list[RuleEvent] = []
    next_tick = start_ms + TICK_MS
    async for reading in history:
        ts = reading.ts_ms
        if ts < start_ms or ts >= end_ms:
            continue
        while next_tick <= ts:
            events.extend(engine.tick(next_tick))
            next_tick += TICK_MS
        events.extend(engine.evaluate(reading))
    while next_tick < end_ms:
        events.extend(engine.tick(next_tick))
        next_tick += TICK_MS
    events.extend(engine.tick(end_ms))
    mine = {r.id for r in rules if r.enabled}
    return Replay(events, [rid for rid in engine.unmatched_rules() if rid in mine])


async def backtest(
    rules: Sequence[RuleModel],
    history: AsyncIterator[Reading],
    start_ms: int,
    end_ms: int,
    *,
    expected_interval_s: Callable[[str], float | None] | None = None,
    late_tolerance_s: int = 300,
    device_labels: Callable[[str], Mapping[str, str]] | None = None,
) -> list[RuleEvent]:
    """Every event the rules would have emitted over ``[start_ms, end_ms)`` (see :func:`replay`)."""
    done = await replay(
        rules,
        history,
        start_ms,
        end_ms,
        expected_interval_s=expected_interval_s,
        late_tolerance_s=late_tolerance_s,
        device_labels=device_labels,
    )
    return done.events


@dataclass(frozen=True, slots=True)
class BacktestAlert:
    """One alert the rules would have raised: fired, and resolved (None: still firing)."""

    rule_id: str
    source: str
    district: str
    asset_type: str
    severity: str
    fired_ms: int
    resolved_ms: int | None
    explanation: str


def alerts_from_events(events: Sequence[RuleEvent]) -> list[BacktestAlert]:
    """Pair each FIRING with the RESOLVED of the same rule and source."""
    open_: dict[tuple[str, str, str], RuleEvent] = {}
    out: list[tuple[RuleEvent, int | None]] = []
    for ev in events:
        key = (ev.rule_id, ev.district, ev.source)
        if ev.state is RuleState.FIRING:
            open_[key] = ev
        elif ev.state is RuleState.RESOLVED and key in open_:
            out.append((open_.pop(key), ev.ts_ms))
    out.extend((ev, None) for ev in open_.values())
    out.sort(key=lambda pair: (pair[0].ts_ms, pair[0].rule_id, pair[0].source))
    return [
        BacktestAlert(
            ev.rule_id,
            ev.source,
            ev.district,
            ev.asset_type,
            ev.severity.label,
            ev.ts_ms,
            resolved,
            ev.explanation.summary,
        )
        for ev, resolved in out
    ]


def _catalog_intervals() -> Callable[[str], float | None] | None:
    """The device catalog's reporting intervals, as the live hub uses them (None: no catalog)."""
    try:
        from hub.catalog import load_catalog

        return load_catalog().expected_interval_s
    except Exception:  # no catalog: no_data falls back to 60 s, as live
        return None


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def backtest_command(
    path: Path,
    history: AsyncIterator[Reading],
    start_ms: int,
    end_ms: int,
    *,
    as_json: bool,
    out: TextIO,
    err: TextIO | None = None,
    expected_interval_s: Callable[[str], float | None] | None = None,
    device_labels: Callable[[str], Mapping[str, str]] | None = None,
) -> int:
    """`hub rules backtest`: print the alerts ``path``'s rules would have raised.

    ``expected_interval_s`` (for ``no_data`` rules) defaults to the device catalog's;
    ``device_labels`` (for ``match.labels``) are today's labels from the registry.
    The rules that matched no series of the history are named after the table (with
    ``as_json``, on ``err``, so ``out`` stays one JSON document).
    """
    loaded = load_rules([path])
    if loaded.problems:
        for p in loaded.problems:
            print(str(p), file=out)
        return 1
    if expected_interval_s is None:
        expected_interval_s = _catalog_intervals()
    done = await replay(
        loaded.rules,
        history,
        start_ms,
        end_ms,
        expected_interval_s=expected_interval_s,
        device_labels=device_labels,
    )
    alerts = alerts_from_events(done.events)
    unmatched = done.unmatched
    note = (
        f"{len(unmatched)} rule(s) matched no series in this history, so they could not"
        f" fire: {', '.join(unmatched)}"
        if unmatched
        else ""
    )
    if as_json:
        doc = [
            {
                "rule": a.rule_id,
                "source": a.source,
                "district": a.district,
                "asset_type": a.asset_type,
                "severity": a.severity,
                "fired_at": _iso(a.fired_ms),
                "resolved_at": None if a.resolved_ms is None else _iso(a.resolved_ms),
                "explanation": a.explanation,
            }
            for a in alerts
        ]
        print(json.dumps(doc, indent=2), file=out)
        if note:
            print(note, file=err if err is not None else sys.stderr)
        return 0
    header = ("rule", "source", "district", "fired at", "resolved at", "severity", "explanation")
    rows = [
        (
            a.rule_id,
            a.source,
            a.district,
            _iso(a.fired_ms),
            _iso(a.resolved_ms),
            a.severity,
            a.explanation,
        )
        for a in alerts
    ]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header[:-1])]
    for row in (header, *rows):
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
    print(
        f"{len(alerts)} alert(s) from {_iso(start_ms)} to {_iso(end_ms)}"
        f" ({sum(1 for a in alerts if a.resolved_ms is None)} still firing at the end)",
        file=out,
    )
    if note:
        print(note, file=out)
    return 0
