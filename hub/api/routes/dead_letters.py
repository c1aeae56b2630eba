"""``GET /api/v1/dead-letters``: recent rejections by reason and device (operator)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Query, Request

from hub.api.auth import Principal
from hub.api.deps import Ctx, Operator, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import DeadLetterOut, DeadLettersOut
from hub.ports import DeadLetter

router = APIRouter(tags=["dead letters"], route_class=ApiRoute)


def _visible(who: Principal, letter: DeadLetter) -> bool:
    """Scoped keys see rejections whose topic places them inside the scope, nothing else."""
    if not who.scoped:
        return True
    parts = letter.topic.split("/")
    district = letter.district or (parts[-4] if len(parts) >= 4 else None)
    asset_type = parts[-3] if len(parts) >= 4 else None
    if district is None or asset_type is None:
        return False
    return who.allows(district, asset_type)


@router.get("/dead-letters", response_model=DeadLettersOut)
async def dead_letters(
    request: Request,
    ctx: Ctx,
    who: Operator,
    reason: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,64}$")] = None,
    device_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLettersOut:
    """Rejected messages, newest first, with how many are kept per reason."""
    letters = [
        d
        for d in ctx.dead_letters.recent(
            reason=reason, device_id=device_id, limit=limit, scope=who.scope
        )
        if _visible(who, d)
    ]
    counts = (
        ctx.dead_letters.counts_by_reason()
        if not who.scoped
        else dict(Counter(d.reason for d in letters))
    )
    set_rows(request, len(letters))
    return DeadLettersOut(
        counts_by_reason=counts,
        items=[
            DeadLetterOut(
                id=d.id,
                received_ms=d.received_ms,
                topic=d.topic,
                reason=d.reason,
                detail=d.detail,
                payload=d.payload,
                device_id=d.device_id,
                district=d.district,
            )
            for d in letters
        ],
    )
