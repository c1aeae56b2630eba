"""The report service: accepts citizens' reports, places and links them, and serves them.

What happens to a report (docs/reports.md):

1. checked against its service (attributes, their types and values) and placed: its
   district is that of the nearest device with a location within
   ``district_radius_m``, else ``default_district``;
2. stored, with the reporter's contact data apart and erased after the retention
   period (``contact_retention_days``) or on request (``hub reports erase``);
3. linked, before the answer goes out, to the alerts it plausibly belongs to: alerts
   of its service's asset type, open or resolved within ``link_window_s``, whose
   device is within ``link_radius_m`` (or whose district it is in: area alerts, and
   devices without a location); the link names the alert's incident too;
4. handed to the rules (``citizen_reports`` rules count reports in a radius and a
   window) through a bounded queue the runtime drains.

Hints (:meth:`ReportService.hints`): reports that keep arriving near a device of
their asset type while it reads normal (no open alert, not stale), or in a district
where no such device is near them, are worth a look: the sensor may be faulty or
misplaced, or the city may need one there.

Open alerts are read through the alert service at most once per ``ALERT_CACHE_S``
(sooner when told an alert changed), so a hundred reports a second do not each
query every open alert.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import AREA_SOURCE, CitizenReport
from hub.ports import (
    UNRESTRICTED,
    AlertFilter,
    AlertRecord,
    Conflict,
    DeviceFilter,
    DeviceInfo,
    NotFound,
    ReportContact,
    ReportFilter,
    ReportHint,
    ReportInvalid,
    ReportLink,
    ReportNote,
    ReportRecord,
    ReportSubmission,
    Scope,
    ServiceAttribute,
    ServiceInfo,
)
from hub.reports.geo import PointIndex, distance_m
from hub.reports.store import NewContact, NewReport, SqliteReportStore
from hub.settings import ReportsSettings

log = get_logger(__name__)

#: Open (and recently resolved) alerts are read again after this long at most.
ALERT_CACHE_S = 1.0
#: Devices with a location are read again after this long when the registry cannot
#: say whether provisioning changed.
DEVICE_REFRESH_S = 60.0
#: Hints are computed at most this often (they read every report of the hint window).
HINT_CACHE_S = 5.0
#: Reports a hint computation reads at most (the newest of the window).
HINT_MAX_REPORTS = 20_000
#: Recently resolved alerts read per refresh for linking.
RESOLVED_FOR_LINKING = 500
#: Reports waiting for the rules before a new one waits (back-pressure on the POST).
RULES_QUEUE = 10_000
#: Contact data past its retention is looked for this often.
PURGE_EVERY_MS = 60_000
#: Who the handling notes name for what the hub did itself.
CITIZEN = "citizen"


class AlertSource(Protocol):
    """The alerts a report may link to (the alert manager)."""

    def list_alerts(self, flt: AlertFilter, scope: Scope) -> list[AlertRecord]:
        """Alerts matching ``flt`` inside ``scope``, newest first."""
        ...


class DeviceSource(Protocol):
    """Devices and their locations (the registry)."""

    def list_devices(self, flt: DeviceFilter, scope: Scope) -> list[DeviceInfo]:
        """Devices matching ``flt`` inside ``scope``."""
        ...

    def get_device(self, device_id: str) -> DeviceInfo | None:
        """One device, or None."""
        ...


@dataclass(frozen=True, slots=True)
class _Placed:
    """A device with a location, as the index keeps it."""

    device_id: str
    district: str
    asset_type: str
    lat: float
    lon: float


class ReportService:
    """Implements hub.ports.ReportServicePort, plus the queue to the rules and retention."""

    def __init__(
        self,
        settings: ReportsSettings,
        store: SqliteReportStore,
        services: Sequence[ServiceInfo],
        *,
        clock: Clock,
        alerts: AlertSource,
        devices: DeviceSource,
        devices_version: Callable[[], int] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._services = {s.service_code: s for s in services}
        self._order = [s.service_code for s in services]
        self._clock = clock
        self._alerts = alerts
        self._devices = devices
        self._devices_version = devices_version
        self._index: PointIndex[str] = PointIndex()
        self._placed: dict[str, _Placed] = {}
        self._index_version: int | None = None
        self._index_at = -math.inf
        self._alert_cache: list[AlertRecord] = []
        self._alert_cache_at = -math.inf
        self._hint_cache: list[ReportHint] = []
        self._hint_cache_at = -math.inf
        self._purged_ms = 0
        #: Reports on their way to the rules (the runtime drains it: :meth:`next_for_rules`).
        self.to_rules: asyncio.Queue[CitizenReport] = asyncio.Queue(RULES_QUEUE)

    # ------------------------------------------------------------------ services

    def services(self) -> list[ServiceInfo]:
        """Every service citizens may report, in the file's order."""
        return [self._services[code] for code in self._order]

    def service(self, service_code: str) -> ServiceInfo | None:
        """One service, or None."""
        return self._services.get(service_code)

    # ------------------------------------------------------------------ intake

    async def submit(self, submission: ReportSubmission) -> ReportRecord:
        """Accept, place, store and link a report, then queue it for the rules.

        Raises NotFound (no such service) or ReportInvalid (what is wrong, by field).
        """
        service = self._services.get(submission.service_code)
        if service is None:
            raise NotFound(f"service_code {submission.service_code!r} not found")
        has_point = submission.lat is not None and submission.lon is not None
        if not has_point and not submission.address_string and not submission.address_id:
            raise ReportInvalid(
                "a location is needed: lat and long, or address_string (or address_id)"
            )
        attributes = check_attributes(service, submission.attributes)
        now = self._clock.now_ms()
        district = self._district(submission.lat, submission.lon)
        new = NewReport(
            service_code=service.service_code,
            service_name=service.service_name,
            description=submission.description,
            address=submission.address_string,
            address_id=submission.address_id,
            lat=submission.lat,
            lon=submission.lon,
            media_url=submission.media_url,
            attributes=attributes,
            district=district,
            asset_type=service.asset_type,
            requested_ms=now,
            token=secrets.token_urlsafe(12) if service.type == "batch" else None,
        )
        contact = NewContact(
            email=submission.email,
            first_name=submission.first_name,
            last_name=submission.last_name,
            phone=submission.phone,
            device_id=submission.device_id,
            account_id=submission.account_id,
            expires_ms=now + self._settings.contact_retention_days * 86_400_000,
        )
        report_id = self._store.insert(new, contact, CITIZEN)
        record = self._store.get(report_id)
        assert record is not None
        links = self._links(record, service, now)
        if links:
            self._store.add_links(report_id, links)
            record = self._store.get(report_id)
            assert record is not None
        await self.to_rules.put(
            CitizenReport(
                report_id=str(report_id),
                service_code=service.service_code,
                district=district,
                asset_type=service.asset_type or "",
                ts_ms=now,
                lat=submission.lat,
                lon=submission.lon,
            )
        )
        return record

    def _district(self, lat: float | None, lon: float | None) -> str:
        """The district of the nearest device with a location, or the default district."""
        if lat is None or lon is None:
            return self._settings.default_district
        self._refresh_devices()
        near = self._index.near(lat, lon, self._settings.district_radius_m)
        return self._placed[near[0][1]].district if near else self._settings.default_district

    def _refresh_devices(self) -> None:
        version = self._devices_version() if self._devices_version is not None else None
        now = self._clock.monotonic()
        stale = version != self._index_version if version is not None else None
        if stale is False or (stale is None and now - self._index_at < DEVICE_REFRESH_S):
            return
        placed: dict[str, _Placed] = {}
        index: PointIndex[str] = PointIndex()
        for d in self._devices.list_devices(DeviceFilter(limit=10_000_000), UNRESTRICTED):
            if d.latitude is None or d.longitude is None:
                continue
            placed[d.device_id] = _Placed(
                d.device_id, d.district, d.asset_type, d.latitude, d.longitude
            )
            index.add(d.device_id, d.latitude, d.longitude)
        self._placed, self._index = placed, index
        self._index_version, self._index_at = version, now

    # ------------------------------------------------------------------ linking

    def alerts_changed(self) -> None:
        """An alert opened, changed or resolved: read them again at the next report."""
        self._alert_cache_at = -math.inf

    def _candidates(self) -> list[AlertRecord]:
        """Open alerts, and alerts resolved within the link window (cached)."""
        now = self._clock.monotonic()
        if now - self._alert_cache_at < ALERT_CACHE_S:
            return self._alert_cache
        since = self._clock.now_ms() - self._settings.link_window_s * 1000
        active = self._alerts.list_alerts(AlertFilter(state="active", limit=100_000), UNRESTRICTED)
        resolved = [
            a
            for a in self._alerts.list_alerts(
                AlertFilter(state="resolved", limit=RESOLVED_FOR_LINKING), UNRESTRICTED
            )
            if a.resolved_ms is not None and a.resolved_ms >= since
        ]
        self._alert_cache, self._alert_cache_at = [*active, *resolved], now
        return self._alert_cache

    def _links(self, report: ReportRecord, service: ServiceInfo, now: int) -> list[ReportLink]:
        """The alerts ``report`` plausibly belongs to (see the module docstring)."""
        if service.asset_type is None:
            return []
        self._refresh_devices()
        radius = self._settings.link_radius_m
        links: list[ReportLink] = []
        for alert in self._candidates():
            if alert.asset_type != service.asset_type:
                continue
            where = self._placed.get(alert.source) if alert.source != AREA_SOURCE else None
            distance: float | None = None
            if where is not None and report.lat is not None and report.lon is not None:
                distance = distance_m(report.lat, report.lon, where.lat, where.lon)
                if distance > radius:
                    continue
                reason = f"{round(distance)} m from {alert.source}"
            elif alert.district == report.district:
                what = "an area alert" if alert.source == AREA_SOURCE else alert.source
                reason = f"in district {alert.district}, as {what}"
            else:
                continue
            links.append(
                ReportLink(
                    alert_id=alert.id,
                    incident_id=alert.incident_id,
                    rule_id=alert.rule_id,
                    reason=reason,
                    distance_m=None if distance is None else round(distance, 1),
                    linked_ms=now,
                )
            )
        return links

    # ------------------------------------------------------------------ reads

    def list_reports(self, flt: ReportFilter, scope: Scope) -> list[ReportRecord]:
        """Reports matching ``flt`` inside ``scope``, newest first."""
        return self._store.find(flt, scope)

    def get_report(self, report_id: int) -> ReportRecord | None:
        """One report, or None."""
        return self._store.get(report_id)

    def by_token(self, token: str) -> ReportRecord | None:
        """The report a token was given for, or None."""
        return self._store.by_token(token)

    def contact(self, report_id: int) -> ReportContact | None:
        """The reporter's contact data (None: none given, or erased)."""
        return self._store.contact(report_id)

    def history(self, report_id: int) -> list[ReportNote]:
        """The report's handling, oldest first."""
        return self._store.notes(report_id)

    def for_alert(self, alert: AlertRecord, scope: Scope) -> list[ReportRecord]:
        """Reports linked to the alert or its incident, and those that fired it."""
        found: dict[int, ReportRecord] = {}
        flts = [ReportFilter(alert_id=alert.id, limit=1000)]
        if alert.incident_id:
            flts.append(ReportFilter(incident_id=alert.incident_id, limit=1000))
        fired = alert.explanation.get("reports")
        if isinstance(fired, list) and fired:
            ids = tuple(int(x) for x in fired if str(x).isdigit())
            flts.append(ReportFilter(ids=ids, limit=1000))
        for flt in flts:
            for r in self._store.find(flt, scope):
                found.setdefault(r.id, r)
        return sorted(found.values(), key=lambda r: (-r.requested_ms, -r.id))

    def since(self, since_ms: int, limit: int = 100_000) -> list[CitizenReport]:
        """Reports that arrived since ``since_ms``, as the rules see them (a cold start
        rebuilds ``citizen_reports`` windows from these)."""
        return [
            CitizenReport(
                report_id=str(r.id),
                service_code=r.service_code,
                district=r.district,
                asset_type=r.asset_type or "",
                ts_ms=r.requested_ms,
                lat=r.lat,
                lon=r.lon,
            )
            for r in self._store.since(since_ms, limit)
        ]

    # ------------------------------------------------------------------ handling

    async def set_status(self, report_id: int, status: str, note: str, actor: str) -> ReportRecord:
        """Give a report a status with a public note; NotFound / Conflict (merged)."""
        report = self._require(report_id)
        if report.merged_into is not None:
            raise Conflict(
                f"report {report_id} was merged into {report.merged_into}; handle that one"
            )
        self._store.set_status(report_id, status, note, actor, self._clock.now_ms())
        self._hint_cache_at = -math.inf
        return self._require(report_id)

    async def merge(self, report_id: int, into: int, note: str, actor: str) -> ReportRecord:
        """Close ``report_id`` as a duplicate of ``into``; its links join ``into``'s."""
        if report_id == into:
            raise Conflict("a report cannot be merged into itself")
        report = self._require(report_id)
        target = self._require(into)
        if report.merged_into is not None:
            raise Conflict(f"report {report_id} was already merged into {report.merged_into}")
        if target.merged_into is not None:
            raise Conflict(
                f"report {into} was merged into {target.merged_into}; merge into that one"
            )
        text = note or f"Duplicate of request {into}."
        self._store.copy_links(report_id, into)
        self._store.set_status(
            report_id, "closed", text, actor, self._clock.now_ms(), merged_into=into
        )
        self._hint_cache_at = -math.inf
        return self._require(report_id)

    def _require(self, report_id: int) -> ReportRecord:
        report = self._store.get(report_id)
        if report is None:
            raise NotFound(f"no report {report_id}")
        return report

    # ------------------------------------------------------------------ privacy

    def erase(self, email: str) -> int:
        """Erase the contact data given with ``email``; return how many reports had it."""
        return self._store.erase_contacts(email)

    def tick(self) -> int:
        """Erase contact data whose retention ended (at most once a minute); how many."""
        now = self._clock.now_ms()
        if now - self._purged_ms < PURGE_EVERY_MS:
            return 0
        self._purged_ms = now
        purged = self._store.purge_contacts(now)
        if purged:
            log.info("reporters' contact data erased: retention ended", reports=purged)
        return purged

    # ------------------------------------------------------------------ hints

    def hints(self, scope: Scope, device_id: str | None = None) -> list[ReportHint]:
        """Devices and districts where reports keep arriving while sensors read normal."""
        now = self._clock.monotonic()
        if now - self._hint_cache_at >= HINT_CACHE_S:
            self._hint_cache, self._hint_cache_at = self._compute_hints(), now
        return [
            h
            for h in self._hint_cache
            if scope.allows(h.district, h.asset_type)
            and (device_id is None or h.device_id == device_id)
        ]

    def _compute_hints(self) -> list[ReportHint]:
        s = self._settings
        now_ms = self._clock.now_ms()
        window = s.hint_window_s * 1000
        recent = [
            r
            for r in self._store.since(now_ms - window, HINT_MAX_REPORTS)
            if r.status != "closed" and r.lat is not None and r.lon is not None and r.asset_type
        ]
        if not recent:
            return []
        self._refresh_devices()
        alerting = {(a.district, a.source) for a in self._candidates() if a.status != "resolved"}
        alerting_types = {
            (a.district, a.asset_type) for a in self._candidates() if a.status != "resolved"
        }
        by_device: dict[tuple[str, str], list[ReportRecord]] = defaultdict(list)
        unserved: dict[tuple[str, str], list[ReportRecord]] = defaultdict(list)
        for r in recent:
            assert r.lat is not None
            assert r.lon is not None
            near = [
                key
                for _, key in self._index.near(r.lat, r.lon, s.hint_radius_m)
                if self._placed[key].asset_type == r.asset_type
            ]
            for key in near:
                by_device[(key, r.service_code)].append(r)
            if not near:
                unserved[(r.district, r.service_code)].append(r)
        hints: list[ReportHint] = []
        for (device_id, code), reports in sorted(by_device.items()):
            if len(reports) < s.hint_min_reports:
                continue
            placed = self._placed[device_id]
            if (placed.district, device_id) in alerting or not self._reads(device_id):
                continue
            hints.append(
                self._hint("device", placed.district, placed.asset_type, device_id, code, reports)
            )
        for (district, code), reports in sorted(unserved.items()):
            asset_type = reports[0].asset_type or ""
            if len(reports) < s.hint_min_reports or (district, asset_type) in alerting_types:
                continue
            hints.append(self._hint("district", district, asset_type, None, code, reports))
        return hints

    def _reads(self, device_id: str) -> bool:
        """True when the device sends readings (not stale, not offline): it reads normal."""
        info = self._devices.get_device(device_id)
        return (
            info is not None and not info.stale and info.status != "offline" and bool(info.latest)
        )

    def _hint(
        self,
        kind: str,
        district: str,
        asset_type: str,
        device_id: str | None,
        code: str,
        reports: Sequence[ReportRecord],
    ) -> ReportHint:
        s = self._settings
        name = self._services[code].service_name if code in self._services else code
        hours = _hours(s.hint_window_s)
        if device_id is not None:
            summary = (
                f"{len(reports)} reports of {name!r} within {round(s.hint_radius_m)} m of"
                f" {device_id} in the last {hours}, while it reads normal (no open alert):"
                " check the sensor and where it is placed."
            )
        else:
            summary = (
                f"{len(reports)} reports of {name!r} in district {district} in the last {hours},"
                f" with no {asset_type} within {round(s.hint_radius_m)} m of them and no open"
                f" {asset_type} alert in the district: the sensors may not cover the place."
            )
        times = [r.requested_ms for r in reports]
        return ReportHint(
            kind=kind,
            district=district,
            asset_type=asset_type,
            device_id=device_id,
            service_code=code,
            reports=tuple(sorted(r.id for r in reports)),
            first_ms=min(times),
            last_ms=max(times),
            summary=summary,
        )


def _hours(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{round(seconds / 60)} minutes"


def check_attributes(
    service: ServiceInfo, given: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """The attribute answers of a report, checked against its service's definition.

    Raises ReportInvalid naming the attribute: unknown, not asked for (``variable``
    false), missing though required, a value not among a list's keys, several
    values for a single-value one, a number or a datetime that is not one, a line
    break in a ``string``.
    """
    answers = dict(given)
    defined = {a.code: a for a in service.attributes}
    for code in answers:
        attr = defined.get(code)
        if attr is None:
            known = ", ".join(defined) or "none"
            raise ReportInvalid(
                f"attribute[{code}]: not an attribute of service {service.service_code}"
                f" (its attributes: {known})"
            )
        if not attr.variable:
            raise ReportInvalid(f"attribute[{code}]: informational only; it takes no answer")
    out: dict[str, tuple[str, ...]] = {}
    for attr in service.attributes:
        values = tuple(v for v in answers.get(attr.code, ()) if v != "")
        if not values:
            if attr.required and attr.variable:
                raise ReportInvalid(f"attribute[{attr.code}]: required ({attr.description})")
            continue
        _check_values(attr, values)
        out[attr.code] = values
    return out


def _check_values(attr: ServiceAttribute, values: tuple[str, ...]) -> None:
    code = attr.code
    if attr.datatype != "multivaluelist" and len(values) > 1:
        raise ReportInvalid(f"attribute[{code}]: one value only ({attr.datatype})")
    if attr.datatype in ("singlevaluelist", "multivaluelist"):
        keys = {v.key for v in attr.values}
        for value in values:
            if value not in keys:
                raise ReportInvalid(
                    f"attribute[{code}]: {value!r} is not one of {', '.join(sorted(keys))}"
                )
        return
    value = values[0]
    if attr.datatype == "number":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ReportInvalid(f"attribute[{code}]: {value!r} is not a number")
    elif attr.datatype == "datetime":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ReportInvalid(
                f"attribute[{code}]: {value!r} is not an ISO 8601 date and time with its"
                " time zone (e.g. 2026-03-01T14:30:00Z)"
            )
    elif attr.datatype == "string" and ("\n" in value or "\r" in value):
        raise ReportInvalid(f"attribute[{code}]: a string attribute has no line breaks")
