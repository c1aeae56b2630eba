"""What the response indicators read from the alert lifecycle (docs/indicators.md).

For every alert opened in a time range: when it was acknowledged and resolved, by
whom and why, how often it escalated, how long a silence or maintenance window muted
it while it was open, and the acknowledgement target of its severity
(``targets.acknowledge`` in ``rules/routes.yaml``). Also the silences and the
occurrences of recurring maintenance windows in a range: the indicators take devices
that they cover out of service.

Read-only over the alert tables, so ``hub indicators report`` can use it without a
running alert manager.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from hub.alerts.lifecycle import match_labels
from hub.alerts.routing import RoutesFile, matchers_match
from hub.alerts.silences import SilenceBook, window_spans
from hub.clock import Clock
from hub.messages import Severity
from hub.ports import MaintenancePeriod, ResponseFact, Scope

#: The actor of resolutions the rule itself made (the alert cleared).
RULE_ACTOR = "rule"


def scope_clause(scope: Scope) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their arguments) keeping alerts inside ``scope``."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, allowed in (("district", scope.districts), ("asset_type", scope.asset_types)):
        if allowed is not None:
            if not allowed:
                clauses.append("0")
                continue
            clauses.append(f"{column} IN ({', '.join('?' for _ in allowed)})")
            args.extend(sorted(allowed))
    return clauses, args


def _union(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlap_ms(lo: int, hi: int, spans: Sequence[tuple[int, int]]) -> int:
    """How much of ``[lo, hi)`` the (possibly overlapping) ``spans`` cover."""
    return sum(max(0, min(hi, b) - max(lo, a)) for a, b in _union(spans))


class AlertFacts:
    """Response facts and maintenance periods over the alert tables of ``conn``."""

    def __init__(
        self, conn: sqlite3.Connection, routes: RoutesFile, clock: Clock, silences: SilenceBook
    ) -> None:
        self._conn = conn
        self._routes = routes
        self._clock = clock
        self._silences = silences

    def maintenance_periods(self, start_ms: int, end_ms: int) -> list[MaintenancePeriod]:
        """Silences and maintenance window occurrences overlapping ``[start_ms, end_ms)``."""
        now = self._clock.now_ms()
        out = [
            MaintenancePeriod(dict(s.matchers), s.starts_ms, s.ends_ms, f"silence:{s.id}")
            for s in self._silences.list(now, include_expired=True)
            if s.starts_ms < end_ms and s.ends_ms > start_ms
        ]
        for w in self._routes.maintenance:
            out.extend(
                MaintenancePeriod(dict(w.match), a, b, f"maintenance:{w.name}")
                for a, b in window_spans(w, start_ms, end_ms)
            )
        return out

    def response_facts(self, start_ms: int, end_ms: int, scope: Scope) -> list[ResponseFact]:
        """The lifecycle of every alert inside ``scope`` opened in ``[start_ms, end_ms)``."""
        clauses, args = scope_clause(scope)
        where = "".join(f" AND {c}" for c in clauses)
        cur = self._conn.cursor()
        cur.row_factory = None  # plain tuples: a month of a city's alerts, read fast
        rows: list[tuple[Any, ...]] = cur.execute(
            "SELECT a.id, a.rule_id, a.severity, a.district, a.asset_type, a.source, a.labels,"  # noqa: S608  (placeholders only)
            " a.started_ms, a.acknowledged_ms, a.resolved_ms, a.resolved_by, a.resolution,"
            " (SELECT COUNT(*) FROM alert_transitions t WHERE t.alert_id = a.id"
            " AND t.status = 'escalated') AS escalations FROM alerts a"
            f" WHERE a.started_ms >= ? AND a.started_ms < ?{where} ORDER BY a.started_ms, a.id",
            (start_ms, end_ms, *args),
        ).fetchall()
        if not rows:
            return []
        now = self._clock.now_ms()
        last_end = max((r[9] or now) for r in rows)
        periods = self.maintenance_periods(rows[0][7], max(last_end, start_ms + 1))
        targets = self._routes.targets.acknowledge
        labels_of = [s.label for s in Severity]
        # Which periods match an alert depends on its labels only; without a matcher on
        # `source`, the alerts of one rule, district and asset type share the answer.
        by_source = any("source" in p.matchers for p in periods)
        groups: dict[str, tuple[Mapping[str, str | list[str]], list[tuple[int, int]]]] = {}
        for p in periods:  # a recurring window's occurrences share their matchers
            g = groups.setdefault(repr(sorted(p.matchers.items())), (p.matchers, []))
            g[1].append((p.starts_ms, p.ends_ms))
        matching: dict[tuple[object, ...], list[tuple[int, int]]] = {}
        out: list[ResponseFact] = []
        for (
            alert_id,
            rule_id,
            sev,
            district,
            asset_type,
            source,
            labels_json,
            started,
            acked,
            resolved,
            resolved_by,
            resolution,
            escalations,
        ) in rows:
            end = resolved if resolved is not None else now
            muted = 0
            if periods:
                key = (
                    labels_json,
                    district,
                    asset_type,
                    sev,
                    rule_id,
                    source if by_source else None,
                )
                matched = matching.get(key)
                if matched is None:
                    labels = match_labels(
                        {
                            "labels": labels_json,
                            "district": district,
                            "asset_type": asset_type,
                            "severity": sev,
                            "rule_id": rule_id,
                            "source": source,
                        }
                    )
                    matched = matching[key] = [
                        span
                        for matchers, spans_of in groups.values()
                        if matchers_match(matchers, labels)
                        for span in spans_of
                    ]
                if matched:
                    muted = overlap_ms(
                        started, end, [(a, b) for a, b in matched if a < end and b > started]
                    )
            responded = acked
            if responded is None and resolved is not None and resolved_by not in (None, RULE_ACTOR):
                responded = resolved
            severity = labels_of[sev]
            out.append(
                ResponseFact(
                    alert_id,
                    rule_id,
                    severity,
                    district,
                    asset_type,
                    source,
                    started,
                    acked,
                    responded,
                    resolved,
                    resolved_by,
                    resolution,
                    int(escalations),
                    muted,
                    targets.get(severity),
                )
            )
        return out
