"""Rules: list, read, create, replace, delete (rule_author), validated exactly as files are."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from hub.api.auth import Principal
from hub.api.deps import Ctx, RuleAuthor, errors, set_rows
from hub.api.routing import ApiRoute
from hub.api.schemas import RuleIn, RuleOut, RuleProblemOut
from hub.ports import RuleSummary

router = APIRouter(tags=["rules"], route_class=ApiRoute)

RuleId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


def rule_out(rule: RuleSummary) -> RuleOut:
    """The public view of a rule."""
    return RuleOut(
        id=rule.id,
        kind=rule.kind,
        version=rule.version,
        file=rule.file,
        managed=rule.managed,
        enabled=rule.enabled,
        severity=rule.severity,
        description=rule.description,
        source_yaml=rule.source_yaml,
        firing=rule.firing,
        pending=rule.pending,
    )


def _unscoped(who: Principal) -> None:
    # A rule may match any district or asset type, so changing one is a city-wide act.
    if who.scoped:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "changing rules needs a key without district/asset scope"
        )


@router.get("/rules", response_model=list[RuleOut])
async def list_rules(request: Request, ctx: Ctx, who: RuleAuthor) -> list[RuleOut]:
    """Every loaded rule with how many series it has firing and pending now."""
    out = [rule_out(r) for r in ctx.rules.list_rules()]
    set_rows(request, len(out))
    return out


@router.get("/rules/changes", response_model=list[dict[str, Any]])
async def rule_changes(
    request: Request,
    ctx: Ctx,
    who: RuleAuthor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Recorded rule changes, newest first: author, time, rule id, diff."""
    out = ctx.rules.changes(limit)
    set_rows(request, len(out))
    return out


@router.get("/rules/problems", response_model=list[RuleProblemOut])
async def rule_problems(request: Request, ctx: Ctx, who: RuleAuthor) -> list[RuleProblemOut]:
    """Current load errors of rule files (their previous rules stay in force)."""
    out = [
        RuleProblemOut(file=p.file, line=p.line, message=p.message) for p in ctx.rules.problems()
    ]
    set_rows(request, len(out))
    return out


@router.get("/rules/{rule_id}", response_model=RuleOut, responses=errors(404))
async def get_rule(request: Request, ctx: Ctx, who: RuleAuthor, rule_id: RuleId) -> RuleOut:
    """One rule."""
    rule = ctx.rules.get_rule(rule_id)
    if rule is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rule {rule_id!r}")
    set_rows(request, 1)
    return rule_out(rule)


@router.post(
    "/rules", response_model=RuleOut, status_code=status.HTTP_201_CREATED, responses=errors(409)
)
async def create_rule(request: Request, ctx: Ctx, who: RuleAuthor, body: RuleIn) -> RuleOut:
    """Add a rule to the managed folder (422 with ``file:line: message`` problems if invalid)."""
    _unscoped(who)
    rule = ctx.rules.create_rule(body.source_yaml, who.name)
    set_rows(request, 1)
    return rule_out(rule)


@router.put("/rules/{rule_id}", response_model=RuleOut, responses=errors(404, 409))
async def update_rule(
    request: Request, ctx: Ctx, who: RuleAuthor, rule_id: RuleId, body: RuleIn
) -> RuleOut:
    """Replace a managed rule (409 for rules from files not managed by the API)."""
    _unscoped(who)
    rule = ctx.rules.update_rule(rule_id, body.source_yaml, who.name)
    set_rows(request, 1)
    return rule_out(rule)


@router.delete(
    "/rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404, 409),
)
async def delete_rule(request: Request, ctx: Ctx, who: RuleAuthor, rule_id: RuleId) -> Response:
    """Remove a managed rule."""
    _unscoped(who)
    ctx.rules.delete_rule(rule_id, who.name)
    set_rows(request, 1)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
