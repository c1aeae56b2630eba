"""Silences (maintenance windows): list (viewer), create and expire (operator)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError

from hub.api.auth import Principal
from hub.api.deps import Ctx, Operator, Viewer, errors, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import MAX_SILENCE_S, SilenceIn, SilenceOut
from hub.ports import ALERT_IDENTITY_LABELS, Silence

router = APIRouter(tags=["silences"], route_class=ApiRoute)

SilenceId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _visible(who: Principal, silence: Silence) -> bool:
    """A scoped key sees silences pinned inside its scope; city-wide ones only unscoped keys."""
    scope = who.scope
    if scope.districts is not None and silence.matchers.get("district") not in scope.districts:
        return False
    return scope.asset_types is None or silence.matchers.get("asset_type") in scope.asset_types


def _out(silence: Silence, now_ms: int) -> SilenceOut:
    return SilenceOut(
        id=silence.id,
        matchers=dict(silence.matchers),
        starts_ms=silence.starts_ms,
        ends_ms=silence.ends_ms,
        created_by=silence.created_by,
        comment=silence.comment,
        active=silence.starts_ms <= now_ms < silence.ends_ms,
    )


@router.get("/silences", response_model=list[SilenceOut])
async def list_silences(
    request: Request, ctx: Ctx, who: Viewer, include_expired: bool = False
) -> list[SilenceOut]:
    """Silences visible to the key, newest first."""
    now = ctx.clock.now_ms()
    out = [_out(s, now) for s in ctx.alerts.list_silences(include_expired) if _visible(who, s)]
    set_rows(request, len(out))
    return out


@router.post("/silences", response_model=SilenceOut, status_code=status.HTTP_201_CREATED)
async def create_silence(request: Request, ctx: Ctx, who: Operator, body: SilenceIn) -> SilenceOut:
    """Silence matching alerts from ``starts_ms`` (default now) to ``ends_ms`` or for a duration.

    Matchers name labels alerts carry (their identity or a label a loaded rule sets);
    any other key is a 422, since such a silence would never match. A key scoped to
    districts or asset types must pin the silence inside its scope with ``district`` /
    ``asset_type`` matchers.
    """
    known = set(ALERT_IDENTITY_LABELS).union(*(r.labels for r in ctx.rules.list_rules()))
    unknown = sorted(set(body.matchers) - known)
    if unknown:
        listed = ", ".join(sorted(known))
        raise RequestValidationError(
            [
                {
                    "type": "label_unknown",
                    "loc": ("body", "matchers", key),
                    "msg": f"no alert carries the label {key!r}, so the silence would never "
                    f"match; labels: {listed}",
                    "input": key,
                }
                for key in unknown
            ]
        )
    candidate = Silence("", body.matchers, 0, 0, who.name, body.comment)
    if not _visible(who, candidate):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "a scoped key must set district/asset_type matchers inside its scope",
        )
    now = ctx.clock.now_ms()
    starts = body.starts_ms if body.starts_ms is not None else now
    ends = body.ends_ms if body.ends_ms is not None else starts + (body.duration_s or 0) * 1000
    if ends <= starts:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ends_ms must be after starts")
    if ends - starts > MAX_SILENCE_S * 1000:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a silence lasts at most {MAX_SILENCE_S // 86400} days",
        )
    if ends <= now:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "the silence would end in the past"
        )
    silence = ctx.alerts.create_silence(body.matchers, starts, ends, who.name, body.comment)
    set_rows(request, 1)
    return _out(silence, now)


@router.post("/silences/{silence_id}/expire", response_model=SilenceOut, responses=errors(404))
async def expire_silence(
    request: Request, ctx: Ctx, who: Operator, silence_id: SilenceId
) -> SilenceOut:
    """End a silence now."""
    found = [s for s in ctx.alerts.list_silences(True) if s.id == silence_id]
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no silence {silence_id!r}")
    if not _visible(who, found[0]):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"silence {silence_id!r} is outside this key's scope"
        )
    silence = ctx.alerts.expire_silence(silence_id, who.name)
    set_rows(request, 1)
    return _out(silence, ctx.clock.now_ms())
