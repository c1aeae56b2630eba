"""Alerts: list, detail with explanation and timeline, ack, resolve, comment, CAP, figures."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response, status

from hub.api.auth import Principal
from hub.api.context import ApiContext
from hub.api.deps import Ctx, Operator, Viewer, errors, json_response, set_rows
from hub.api.routes.reports import report_dict
from hub.api.routing import ApiRoute
from hub.api.schemas import (
    DISTRICT_PATTERN,
    AlertDetail,
    AlertOut,
    AlertState,
    CommentIn,
    ReportOut,
    RequiredCommentIn,
    ResolveIn,
    SeverityName,
    TransitionOut,
)
from hub.api.visibility import Visibility
from hub.ports import AlertFilter, AlertRecord

router = APIRouter(tags=["alerts"], route_class=ApiRoute)

MAX_PAGE = 1000
AlertId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
DistrictQ = Annotated[str | None, Query(pattern=DISTRICT_PATTERN)]
AssetTypeQ = Annotated[str | None, Query(pattern=DISTRICT_PATTERN)]
RuleIdQ = Annotated[str | None, Query(min_length=1, max_length=128)]


def alert_dict(alert: AlertRecord, withheld: list[str]) -> dict[str, Any]:
    """The public view of an alert (the fields of ``AlertOut``), as plain JSON.

    ``alert`` is already as the caller may see it (:class:`Visibility`), ``withheld``
    the metrics whose values were taken out of it.
    """
    return {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "rule_version": alert.rule_version,
        "status": alert.status,
        "severity": alert.severity,
        "district": alert.district,
        "asset_type": alert.asset_type,
        "source": alert.source,
        "summary": alert.summary,
        "description": alert.description,
        "labels": {str(k): str(v) for k, v in alert.labels.items()},
        "started_ms": alert.started_ms,
        "updated_ms": alert.updated_ms,
        "acknowledged_ms": alert.acknowledged_ms,
        "resolved_ms": alert.resolved_ms,
        "silenced": alert.silenced,
        "incident_id": alert.incident_id,
        "reopened_from": alert.reopened_from,
        "resolution": alert.resolution,
        "withheld_metrics": withheld,
        "muted_by": alert.muted_by,
    }


def alert_out(ctx: ApiContext, who: Principal, alert: AlertRecord) -> AlertOut:
    """The public view of an alert, without values the key may not read."""
    return AlertOut(**alert_dict(*Visibility(ctx.catalog, who).alert(alert)))


def _alert_in_scope(ctx: ApiContext, who: Principal, alert_id: str) -> AlertRecord:
    alert = ctx.alerts.get_alert(alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id!r}")
    who.require_scope(alert.district, alert.asset_type, f"alert {alert_id!r}")
    return alert


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    state: AlertState | None = None,
    district: DistrictQ = None,
    severity: SeverityName | None = None,
    asset_type: AssetTypeQ = None,
    rule_id: RuleIdQ = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """Alerts inside the key's scope, newest first (``state=active``: not resolved)."""
    flt = AlertFilter(
        state=state,
        district=district,
        severity=severity,
        asset_type=asset_type,
        rule_id=rule_id,
        limit=limit,
        offset=offset,
    )
    visible = Visibility(ctx.catalog, who)
    out = [
        alert_dict(*visible.alert(a))
        for a in ctx.alerts.list_alerts(flt, who.scope)
        if who.allows(a.district, a.asset_type)
    ]
    set_rows(request, len(out))
    return json_response(out)


@router.get("/alerts/figures", response_model=dict[str, Any])
async def response_figures(
    request: Request,
    ctx: Ctx,
    who: Viewer,
    district: DistrictQ = None,
    severity: SeverityName | None = None,
    asset_type: AssetTypeQ = None,
    rule_id: RuleIdQ = None,
) -> dict[str, Any]:
    """Time to acknowledge and to resolve (count, median, p90) by district, asset type, severity."""
    flt = AlertFilter(district=district, severity=severity, asset_type=asset_type, rule_id=rule_id)
    figures = ctx.alerts.response_figures(flt, who.scope)
    set_rows(request, 1)
    return figures


@router.get(
    "/alerts/cap.atom",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {}}, "description": "Atom feed"}},
)
async def cap_feed(request: Request, ctx: Ctx, who: Viewer) -> Response:
    """Atom feed of current alerts, each linking its OASIS CAP 1.2 message."""
    base_url = str(request.base_url).rstrip("/")
    view = Visibility(ctx.catalog, who).alert_view
    feed = ctx.alerts.cap_feed(who.scope, base_url, view=view)
    set_rows(request, feed.count("<entry"))
    return Response(feed, media_type="application/atom+xml")


@router.get("/alerts/{alert_id}", response_model=AlertDetail, responses=errors(404))
async def get_alert(request: Request, ctx: Ctx, who: Viewer, alert_id: AlertId) -> AlertDetail:
    """One alert with the explanation of why it fired (rule, version, readings), its timeline,
    and the citizen reports linked to it or its incident (``reports``)."""
    alert = _alert_in_scope(ctx, who, alert_id)
    visible = Visibility(ctx.catalog, who)
    shown, withheld = visible.alert(alert)
    timeline = [
        TransitionOut(
            ts_ms=t.ts_ms, status=t.status, actor=t.actor, comment=t.comment, detail=dict(t.detail)
        )
        for t in visible.timeline(alert, ctx.alerts.timeline(alert_id))
    ]
    reports = [ReportOut(**report_dict(r)) for r in ctx.reports.for_alert(alert, who.scope)]
    set_rows(request, 1)
    return AlertDetail(
        **alert_dict(shown, withheld),
        explanation=dict(shown.explanation),
        timeline=timeline,
        reports=reports,
    )


@router.get(
    "/alerts/{alert_id}/cap",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}, "description": "CAP 1.2 document"},
        **errors(404),
    },
)
async def get_cap(request: Request, ctx: Ctx, who: Viewer, alert_id: AlertId) -> Response:
    """The alert as an OASIS CAP 1.2 document."""
    _alert_in_scope(ctx, who, alert_id)
    set_rows(request, 1)
    view = Visibility(ctx.catalog, who).alert_view
    return Response(ctx.alerts.cap_xml(alert_id, view=view), media_type="application/xml")


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses=errors(404, 409))
async def acknowledge(
    request: Request,
    ctx: Ctx,
    who: Operator,
    alert_id: AlertId,
    body: Annotated[CommentIn | None, Body()] = None,
) -> AlertOut:
    """Acknowledge a firing alert (409 when already resolved)."""
    _alert_in_scope(ctx, who, alert_id)
    alert = await ctx.alerts.acknowledge(alert_id, who.name, body.comment if body else "")
    set_rows(request, 1)
    return alert_out(ctx, who, alert)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut, responses=errors(404, 409))
async def resolve(
    request: Request,
    ctx: Ctx,
    who: Operator,
    alert_id: AlertId,
    body: Annotated[ResolveIn | None, Body()] = None,
) -> AlertOut:
    """Resolve an alert by hand, saying why: ``reason`` is one of fixed, false_alarm,
    duplicate, maintenance, other (the default); it feeds each rule's false-alarm rate
    (409 when already resolved)."""
    _alert_in_scope(ctx, who, alert_id)
    body = body or ResolveIn()
    alert = await ctx.alerts.resolve(alert_id, who.name, body.comment, body.reason)
    set_rows(request, 1)
    return alert_out(ctx, who, alert)


@router.post("/alerts/{alert_id}/comment", response_model=AlertOut, responses=errors(404))
async def comment(
    request: Request, ctx: Ctx, who: Operator, alert_id: AlertId, body: RequiredCommentIn
) -> AlertOut:
    """Add a comment to the alert's timeline."""
    _alert_in_scope(ctx, who, alert_id)
    alert = await ctx.alerts.comment(alert_id, who.name, body.comment)
    set_rows(request, 1)
    return alert_out(ctx, who, alert)
