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
from collections.abc import Sequence
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
        rows = self._conn.execute(
            "SELECT a.*, (SELECT COUNT(*) FROM alert_transitions t WHERE t.alert_id = a.id"  # noqa: S608  (placeholders only)
            " AND t.status = 'escalated') AS escalations FROM alerts a"
            f" WHERE a.started_ms >= ? AND a.started_ms < ?{where} ORDER BY a.started_ms, a.id",
            (start_ms, end_ms, *args),
        ).fetchall()
        if not rows:
            return []
        now = self._clock.now_ms()
        last_end = max((r["resolved_ms"] or now) for r in rows)
        periods = self.maintenance_periods(rows[0]["started_ms"], max(last_end, start_ms + 1))
        targets = self._routes.targets.acknowledge
        out: list[ResponseFact] = []
        for r in rows:
            severity = Severity(r["severity"]).label
            labels = match_labels(r)
            end = r["resolved_ms"] if r["resolved_ms"] is not None else now
            spans = [
                (p.starts_ms, p.ends_ms) for p in periods if matchers_match(p.matchers, labels)
            ]
            resolved_by = r["resolved_by"]
            responded = r["acknowledged_ms"]
            if (
                responded is None
                and r["resolved_ms"] is not None
                and resolved_by not in (None, RULE_ACTOR)
            ):
                responded = r["resolved_ms"]
            out.append(
                ResponseFact(
                    alert_id=r["id"],
                    rule_id=r["rule_id"],
                    severity=severity,
                    district=r["district"],
                    asset_type=r["asset_type"],
                    source=r["source"],
                    started_ms=r["started_ms"],
                    acknowledged_ms=r["acknowledged_ms"],
                    responded_ms=responded,
                    resolved_ms=r["resolved_ms"],
                    resolved_by=resolved_by,
                    resolution=r["resolution"],
                    escalations=int(r["escalations"]),
                    muted_ms=overlap_ms(r["started_ms"], end, spans) if spans else 0,
                    ack_target_ms=targets.get(severity),
                )
            )
        return out
