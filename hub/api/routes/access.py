"""``GET /api/v1/audit``: the audit log, for admins."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from hub.api.audit import entries
from hub.api.deps import Admin, Ctx, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import AuditOut

router = APIRouter(tags=["audit"], route_class=ApiRoute)


@router.get("/audit", response_model=list[AuditOut])
async def audit_log(
    request: Request,
    ctx: Ctx,
    who: Admin,
    key_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{8}$")] = None,
    since_ms: Annotated[int | None, Query(ge=0, le=10**14)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Audited requests newest first: who (key), what (method, path, query), when, status, rows.

    City-wide keys only: the log names every district's devices and alerts.
    """
    if who.scoped:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the audit log covers the whole city; a key scoped to districts or asset types "
            "may not read it",
        )
    rows = entries(ctx.conn, limit=limit, key_id=key_id, since_ms=since_ms, before_id=before_id)
    set_rows(request, len(rows))
    return [AuditOut(**asdict(r)) for r in rows]
