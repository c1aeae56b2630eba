"""``citizen_reports``: citizens as sensors; enough reports of a service close together.

Fed by reports (:meth:`hub.rules.engine.RuleEngine.observe_report`), not readings:
the series of a district keeps the reports of the rule's service that arrived within
``window`` (at most :data:`MAX_KEPT`), and the condition holds while at least
``min_reports`` of them lie within ``radius_m`` of one of them. ``tick`` lets
reports age out of the window, which clears the condition (``clear_for`` keeps the
alert open longer, as for any rule). The alert is the district's area alert (source
``_area``); its explanation lists the reports of the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hub.durations import format_duration
from hub.messages import CitizenReport, Explanation, MetricValue, Reading, RuleState
from hub.rules.kinds.base import Kind, _glob
from hub.rules.model import CitizenReportsRule
from hub.rules.state import Series

#: Reports a series keeps at most (the newest); a cluster needs far fewer.
MAX_KEPT = 500
#: Report ids named in an explanation's sentence at most (all are in ``reports``).
NAMED = 20
#: Mean Earth radius, metres (as hub.reports.geo; the rules do not import it).
_EARTH_M = 6_371_008.8

#: One kept report: (report id, arrival ms, latitude, longitude).
Kept = tuple[str, int, float, float]


def _distance_m(a: Kept, b: Kept) -> float:
    p1, p2 = math.radians(a[2]), math.radians(b[2])
    dp, dl = p2 - p1, math.radians(b[3] - a[3])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_M * math.asin(min(1.0, math.sqrt(h)))


class CitizenReports(Kind):
    """``aux`` is the list of kept reports, oldest first."""

    timer_native = True
    is_reports = True

    def __init__(self, rule: CitizenReportsRule) -> None:
        super().__init__(rule)
        self.r = rule
        self.service = rule.service
        self.window_ms = rule.window_ms
        self._in_district = _glob(rule.match.district)

    def accepts(self, report: CitizenReport) -> bool:
        """True for a located report of this rule's service in a district it matches."""
        return (
            report.service_code == self.service
            and report.lat is not None
            and report.lon is not None
            and (self._in_district is None or bool(self._in_district(report.district)))
        )

    def new_aux(self) -> list[Kept]:
        """No reports yet."""
        return []

    def step(self, s: Series, ts: int, values: Mapping[str, MetricValue], reading: Reading) -> bool:
        """Not fed by readings."""
        return len(self.cluster(s, ts)) >= self.r.min_reports

    def add(self, s: Series, report: CitizenReport) -> bool:
        """Keep ``report`` (once) and age the window; False when it was kept already."""
        aux: list[Kept] = s.aux
        if any(k[0] == report.report_id for k in aux):
            return False
        assert report.lat is not None
        assert report.lon is not None
        aux.append((report.report_id, report.ts_ms, report.lat, report.lon))
        aux.sort(key=lambda k: k[1])
        del aux[:-MAX_KEPT]
        self.age(s, max(report.ts_ms, s.last_ts))
        return True

    def age(self, s: Series, now_ms: int) -> None:
        """Forget reports older than the window."""
        aux: list[Kept] = s.aux
        while aux and aux[0][1] < now_ms - self.window_ms:
            aux.pop(0)

    def cluster(self, s: Series, now_ms: int) -> list[Kept]:
        """The biggest set of kept reports within ``radius_m`` of one of them (newest
        centre first on a tie)."""
        aux: list[Kept] = [k for k in s.aux if k[1] >= now_ms - self.window_ms]
        best: list[Kept] = []
        for centre in reversed(aux):
            near = [k for k in aux if _distance_m(centre, k) <= self.r.radius_m]
            if len(near) > len(best):
                best = near
        return best

    def holds(self, s: Series, now_ms: int) -> bool:
        """Whether enough reports are close together within the window now."""
        self.age(s, now_ms)
        found = self.cluster(s, now_ms)
        s.value = float(len(found))
        return len(found) >= self.r.min_reports

    def explain(self, s: Series, state: RuleState) -> Explanation:
        """The reports of the cluster: how many, which, where, against how many needed."""
        now = s.last_ts
        found = self.cluster(s, now) if state is not RuleState.RESOLVED else []
        ids = tuple(k[0] for k in found)
        window = format_duration(self.window_ms)
        radius = f"{self.r.radius_m:g} m"
        if state is RuleState.RESOLVED:
            summary = (
                f"Fewer than {self.r.min_reports} citizen reports of {self.service} within"
                f" {radius} of each other in the last {window} in district {s.dev[0]}."
            )
        else:
            lat = sum(k[2] for k in found) / len(found) if found else 0.0
            lon = sum(k[3] for k in found) / len(found) if found else 0.0
            named = ", ".join(ids[:NAMED]) + (" …" if len(ids) > NAMED else "")
            summary = (
                f"{len(found)} citizen reports of {self.service} within {radius} of each other"
                f" in {window} (at least {self.r.min_reports} needed) in district {s.dev[0]},"
                f" around {lat:.5f}, {lon:.5f}: requests {named}{self.held(state)}."
            )
        return Explanation(
            summary, float(self.r.min_reports), {"reports": float(len(found))}, (), ids
        )

    def dump_aux(self, aux: Any) -> Any:
        """Kept reports as lists."""
        return [list(k) for k in aux]

    def load_aux(self, data: Any) -> Any:
        """Inverse of dump_aux."""
        return [(str(k[0]), int(k[1]), float(k[2]), float(k[3])) for k in data]
