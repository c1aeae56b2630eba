"""Citizen reports for operators (CONTRACT §6, §10): list and filter, one report with its
links and history, the reporter's contact (audited), status with a public note, merge
of duplicates, the hints where reports keep arriving while sensors read normal.

The public side (what citizens' apps use) is Open311, hub.api.routes.open311.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Ctx, Operator, Viewer, errors, json_response, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import (
    DEVICE_ID_PATTERN,
    DISTRICT_PATTERN,
    ReportContactOut,
    ReportDetail,
    ReportHintOut,
    ReportMergeIn,
    ReportOut,
    ReportServiceOut,
    ReportStatus,
    ReportStatusIn,
)
from hub.ports import ReportFilter, ReportHint, ReportRecord

router = APIRouter(tags=["reports"], route_class=ApiRoute)

MAX_PAGE = 1000
ReportId = Annotated[int, Path(ge=1, le=2**62)]
CodeQ = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
IdQ = Annotated[str | None, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


def report_dict(r: ReportRecord) -> dict[str, Any]:
    """A report as ``ReportOut`` (the record has no contact data to leak)."""
    return {
        "id": r.id,
        "service_code": r.service_code,
        "service_name": r.service_name,
        "status": r.status,
        "public_status": r.public_status,
        "status_notes": r.status_notes,
        "description": r.description,
        "address": r.address,
        "address_id": r.address_id,
        "lat": r.lat,
        "lon": r.lon,
        "media_url": r.media_url,
        "attributes": {k: list(v) for k, v in r.attributes.items()},
        "district": r.district,
        "asset_type": r.asset_type,
        "requested_ms": r.requested_ms,
        "updated_ms": r.updated_ms,
        "merged_into": r.merged_into,
        "has_contact": r.has_contact,
        "links": [
            {
                "alert_id": link.alert_id,
                "incident_id": link.incident_id,
                "rule_id": link.rule_id,
                "reason": link.reason,
                "distance_m": link.distance_m,
                "linked_ms": link.linked_ms,
            }
            for link in r.links
        ],
    }


def hint_dict(h: ReportHint) -> dict[str, Any]:
    """A hint as ``ReportHintOut``."""
    return {
        "kind": h.kind,
        "district": h.district,
        "asset_type": h.asset_type,
        "device_id": h.device_id,
        "service_code": h.service_code,
        "reports": list(h.reports),
        "first_ms": h.first_ms,
        "last_ms": h.last_ms,
        "summary": h.summary,
    }


def _in_scope(ctx: ApiContext, who: Principal, report_id: int) -> ReportRecord:
    report = ctx.reports.get_report(report_id)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report {report_id}")
    who.require_scope(report.district, report.asset_type or "", f"report {report_id}")
    return report


def _detail(ctx: ApiContext, report: ReportRecord) -> dict[str, Any]:
    history = [
        {"ts_ms": n.ts_ms, "status": n.status, "note": n.note, "actor": n.actor}
        for n in ctx.reports.history(report.id)
    ]
    return {**report_dict(report), "history": history}


@router.get("/reports", response_model=list[ReportOut])
async def list_reports(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    status: Annotated[list[ReportStatus] | None, Query(max_length=4)] = None,
    service_code: CodeQ = None,
    district: Annotated[str | None, Query(pattern=DISTRICT_PATTERN)] = None,
    asset_type: Annotated[str | None, Query(pattern=DISTRICT_PATTERN)] = None,
    incident_id: IdQ = None,
    alert_id: IdQ = None,
    start: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    end: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """Reports inside the key's scope, newest first; ``status`` may be repeated."""
    flt = ReportFilter(
        statuses=tuple(status) if status else None,
        service_codes=(service_code,) if service_code else None,
        district=district,
        asset_type=asset_type,
        incident_id=incident_id,
        alert_id=alert_id,
        start_ms=start,
        end_ms=end,
        limit=limit,
        offset=offset,
    )
    out = [report_dict(r) for r in ctx.reports.list_reports(flt, who.scope)]
    set_rows(request, len(out))
    return json_response(out)


@router.get("/reports/services", response_model=list[ReportServiceOut])
async def report_services(request: Request, ctx: Ctx, who: Viewer) -> Response:
    """The services citizens may report (services.yaml) and the asset type of each."""
    out = [
        {
            "service_code": s.service_code,
            "service_name": s.service_name,
            "group": s.group,
            "asset_type": s.asset_type,
            "problem": s.problem,
        }
        for s in ctx.reports.services()
    ]
    set_rows(request, len(out))
    return json_response(out)


@router.get("/reports/hints", response_model=list[ReportHintOut])
async def report_hints(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
) -> Response:
    """Where reports keep arriving while the sensors read normal: devices to check, and
    districts where no sensor is near them."""
    out = [hint_dict(h) for h in ctx.reports.hints(who.scope, device_id)]
    set_rows(request, len(out))
    return json_response(out)


@router.get("/reports/{report_id}", response_model=ReportDetail, responses=errors(404))
async def get_report(request: Request, ctx: Ctx, who: Viewer, report_id: ReportId) -> Response:
    """One report with its links to alerts and incidents and its handling history."""
    report = _in_scope(ctx, who, report_id)
    set_rows(request, 1)
    return json_response(_detail(ctx, report))


@router.get("/reports/{report_id}/contact", response_model=ReportContactOut, responses=errors(404))
async def get_contact(
    request: Request, ctx: Ctx, who: Operator, report_id: ReportId
) -> ReportContactOut:
    """The reporter's e-mail, name and phone (404 once erased); every read is audited."""
    _in_scope(ctx, who, report_id)
    contact = ctx.reports.contact(report_id)
    if contact is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"report {report_id} has no contact data (none was given, or it was erased)",
        )
    set_rows(request, 1)
    return ReportContactOut(
        email=contact.email,
        first_name=contact.first_name,
        last_name=contact.last_name,
        phone=contact.phone,
    )


@router.post("/reports/{report_id}/status", response_model=ReportDetail, responses=errors(404, 409))
async def set_status(
    request: Request, ctx: Ctx, who: Operator, report_id: ReportId, body: ReportStatusIn
) -> Response:
    """Give the report a status and a note the public reads (409 when it was merged)."""
    _in_scope(ctx, who, report_id)
    report = await ctx.reports.set_status(report_id, body.status, body.note, who.name)
    set_rows(request, 1)
    return json_response(_detail(ctx, report))


@router.post("/reports/{report_id}/merge", response_model=ReportDetail, responses=errors(404, 409))
async def merge(
    request: Request, ctx: Ctx, who: Operator, report_id: ReportId, body: ReportMergeIn
) -> Response:
    """Close the report as a duplicate of ``into`` (its links join that report's)."""
    _in_scope(ctx, who, report_id)
    _in_scope(ctx, who, body.into)
    report = await ctx.reports.merge(report_id, body.into, body.note, who.name)
    set_rows(request, 1)
    return json_response(_detail(ctx, report))
