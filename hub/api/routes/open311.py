"""Open311 GeoReport v2 at ``/open311/v2`` (CONTRACT §10): public, no key.

discovery, services (list and definitions), POST requests (url-encoded form), GET
requests with the specification's filters, GET requests/{id}, GET tokens/{token};
each in ``.json`` and ``.xml``. Every error, from a wrong filter to a rate limit, is
the specification's list of ``{code, description}`` in the format asked for, with the
HTTP status it names (400, 404; 403 is never used: no key is needed; 413 and 429 for
a body too large and too many requests). Unknown query parameters are a 400, as an
API route's are a 422: a mistyped filter must not answer the unfiltered list.

Rate limits are per client address (hub.api.ratelimit): ``HUB_REPORTS__POST_PER_MINUTE``
for posting, ``HUB_REPORTS__READ_PER_MINUTE`` for everything else. Nothing here needs
or reads an API key; ``api_key`` and ``jurisdiction_id`` are accepted everywhere, as
clients send them (a configured ``HUB_REPORTS__JURISDICTION_ID`` must match).

These routes are documented by the specification and docs/reports.md, not in
/openapi.json (whose errors are ``{"detail": …}``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from hub.api.auth import client_address
from hub.api.context import ApiContext
from hub.api.errors import BodyTooLarge
from hub.api.open311 import (
    Open311Error,
    comma_list,
    created_doc,
    definition_doc,
    discovery_doc,
    encode,
    errors_doc,
    parse_report_form,
    parse_w3_datetime,
    request_doc,
    service_doc,
    split_format,
    token_doc,
    w3,
)
from hub.api.ratelimit import RateLimiter
from hub.logging import get_logger
from hub.ports import UNRESTRICTED, NotFound, ReportFilter, ReportInvalid, ReportRecord

log = get_logger(__name__)

router = APIRouter(prefix="/open311/v2", include_in_schema=False)

#: Arguments every method takes (the specification's, and what clients add).
COMMON_ARGS = frozenset({"jurisdiction_id", "api_key"})
REQUEST_FILTERS = frozenset(
    {"service_request_id", "service_code", "start_date", "end_date", "status"}
)
#: GET requests: the specification's default and longest range, and most requests.
DEFAULT_RANGE_MS = 90 * 86_400_000
MAX_REQUESTS = 1000
PUBLIC_STATUSES = {"open": ("open", "acknowledged", "in_progress"), "closed": ("closed",)}


class Limits:
    """The public endpoints' rate limiters (one set per app)."""

    def __init__(self, post_per_minute: int, read_per_minute: int) -> None:
        self.post = RateLimiter.per_minute(post_per_minute)
        self.read = RateLimiter.per_minute(read_per_minute)


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _respond(fmt: str, root: str, doc: Any, status: int = 200, **headers: str) -> Response:
    body, media_type = encode(fmt, root, doc)
    return Response(body, status_code=status, media_type=media_type, headers=headers or None)


def _fail(fmt: str, error: Open311Error) -> Response:
    body, media_type = encode(fmt, "errors", errors_doc(error.status, error.description))
    return Response(body, status_code=error.status, media_type=media_type, headers=error.headers)


def _check(
    request: Request, *, post: bool = False, filters: Collection[str] = ()
) -> dict[str, str]:
    """Rate limit, unknown or repeated arguments, jurisdiction: the query's arguments."""
    ctx = _ctx(request)
    limits: Limits = request.app.state.open311_limits
    address = client_address(request.scope, ctx.settings.api.trusted_proxies)
    wait = (limits.post if post else limits.read).take(address, ctx.clock.monotonic())
    if wait is not None:
        what = "reports posted" if post else "requests"
        raise Open311Error(
            429,
            f"too many {what} from this address; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    args: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in COMMON_ARGS and name not in filters:
            allowed = ", ".join(sorted({*COMMON_ARGS, *filters}))
            raise Open311Error(400, f"{name[:64]!r}: not an argument of this method ({allowed})")
        if name in args:
            raise Open311Error(400, f"{name}: given twice (several values: comma delimited)")
        args[name] = value
    _jurisdiction(ctx, args.get("jurisdiction_id"))
    return args


def _jurisdiction(ctx: ApiContext, given: str | None) -> None:
    wanted = ctx.settings.reports.jurisdiction_id
    if wanted and given and given != wanted:
        raise Open311Error(404, f"jurisdiction_id {given[:100]!r} not found (this is {wanted})")


async def _run(fmt: str, work: Callable[[], Awaitable[Response]]) -> Response:
    """``work``'s answer, or its failure in the specification's error format."""
    try:
        return await work()
    except Open311Error as exc:
        return _fail(fmt, exc)
    except ReportInvalid as exc:
        return _fail(fmt, Open311Error(400, str(exc)))
    except NotFound as exc:
        return _fail(fmt, Open311Error(404, str(exc)))
    except BodyTooLarge as exc:
        return _fail(fmt, Open311Error(413, str(exc.detail)))


def _format_of(name: str, expected: str) -> tuple[str, Open311Error | None]:
    """The format of ``{expected}.{fmt}``; a wrong one is a 404 (answered in XML, the
    specification's required format)."""
    try:
        stem, fmt = split_format(name)
    except Open311Error as exc:
        return "xml", exc
    if stem != expected:
        return fmt, Open311Error(404, f"no resource {name[:80]!r}")
    return fmt, None


# --------------------------------------------------------------------------- discovery


@router.get("/discovery.{fmt}")
async def discovery(request: Request, fmt: str) -> Response:
    """Service discovery: this endpoint, its formats, the specification."""
    fmt, bad = _format_of(f"discovery.{fmt}", "discovery")

    async def work() -> Response:
        if bad is not None:
            raise bad
        _check(request)
        ctx = _ctx(request)
        base = str(request.base_url).rstrip("/") + router.prefix
        path = Path(ctx.settings.reports.services_path)
        try:
            changed = int(os.stat(path).st_mtime * 1000)
        except OSError:
            changed = 0
        contact = f"Operations centre of the city: {ctx.settings.alerts.sender}"
        return _respond(fmt, "discovery", discovery_doc(base, w3(changed), contact))

    return await _run(fmt, work)


# --------------------------------------------------------------------------- services


@router.get("/services.{fmt}")
async def services(request: Request, fmt: str) -> Response:
    """GET Service List."""
    fmt, bad = _format_of(f"services.{fmt}", "services")

    async def work() -> Response:
        if bad is not None:
            raise bad
        _check(request)
        docs = [service_doc(s) for s in _ctx(request).reports.services()]
        return _respond(fmt, "services", docs)

    return await _run(fmt, work)


@router.get("/services/{name}")
async def service_definition(request: Request, name: str) -> Response:
    """GET Service Definition."""
    try:
        code, fmt = split_format(name)
    except Open311Error as exc:
        return _fail("xml", exc)

    async def work() -> Response:
        _check(request)
        service = _ctx(request).reports.service(code)
        if service is None:
            raise Open311Error(404, f"service_code {code[:64]!r} not found")
        return _respond(fmt, "service_definition", definition_doc(service))

    return await _run(fmt, work)


# --------------------------------------------------------------------------- requests


@router.post("/requests.{fmt}")
async def post_request(request: Request, fmt: str) -> Response:
    """POST Service Request: a url-encoded form; the answer carries the id (or a token)."""
    fmt, bad = _format_of(f"requests.{fmt}", "requests")

    async def work() -> Response:
        if bad is not None:
            raise bad
        _check(request, post=True)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            raise Open311Error(
                400,
                "uploads are not accepted: send the form url-encoded and give the picture's"
                " address as media_url",
            )
        if content_type != "application/x-www-form-urlencoded":
            raise Open311Error(
                400,
                "the request must be a form: Content-Type: application/x-www-form-urlencoded",
            )
        submission, jurisdiction = parse_report_form(await request.body())
        ctx = _ctx(request)
        _jurisdiction(ctx, jurisdiction)
        report = await ctx.reports.submit(submission)
        service = ctx.reports.service(report.service_code)
        assert service is not None
        return _respond(fmt, "service_requests", [created_doc(report, service)])

    return await _run(fmt, work)


def _public(ctx: ApiContext, reports: list[ReportRecord]) -> list[dict[str, Any]]:
    return [request_doc(r, ctx.reports.service(r.service_code)) for r in reports]


@router.get("/requests.{fmt}")
async def get_requests(request: Request, fmt: str) -> Response:
    """GET Service Requests, with the specification's filters (90 days, 1000 at most)."""
    fmt, bad = _format_of(f"requests.{fmt}", "requests")

    async def work() -> Response:
        if bad is not None:
            raise bad
        args = _check(request, filters=REQUEST_FILTERS)
        args = {k: v for k, v in args.items() if v != ""}
        ctx = _ctx(request)
        if "service_request_id" in args:
            ids: list[int] = []
            for item in comma_list("service_request_id", args["service_request_id"], 1000):
                if not item.isdigit() or len(item) > 18:
                    raise ReportInvalid(f"service_request_id: {item[:40]!r} is not a request id")
                ids.append(int(item))
            flt = ReportFilter(ids=tuple(ids), limit=MAX_REQUESTS)
        else:
            flt = _filters(ctx, args)
        found = ctx.reports.list_reports(flt, UNRESTRICTED)
        return _respond(fmt, "service_requests", _public(ctx, found))

    return await _run(fmt, work)


def _filters(ctx: ApiContext, args: dict[str, str]) -> ReportFilter:
    now = ctx.clock.now_ms()
    end = parse_w3_datetime("end_date", args["end_date"]) if "end_date" in args else None
    start = parse_w3_datetime("start_date", args["start_date"]) if "start_date" in args else None
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - DEFAULT_RANGE_MS
    if end is None:
        end = start + DEFAULT_RANGE_MS
    if end < start:
        raise ReportInvalid("end_date: before start_date")
    if end - start > DEFAULT_RANGE_MS:
        raise ReportInvalid("start_date and end_date: may not span more than 90 days")
    codes = None
    if "service_code" in args:
        codes = tuple(comma_list("service_code", args["service_code"], 100))
    statuses = None
    if "status" in args:
        wanted = comma_list("status", args["status"], 2)
        unknown = [s for s in wanted if s not in PUBLIC_STATUSES]
        if unknown:
            raise ReportInvalid(f"status: {unknown[0][:20]!r} is not open or closed")
        statuses = tuple(s for w in wanted for s in PUBLIC_STATUSES[w])
    return ReportFilter(
        service_codes=codes, statuses=statuses, start_ms=start, end_ms=end, limit=MAX_REQUESTS
    )


@router.get("/requests/{name}")
async def get_request(request: Request, name: str) -> Response:
    """GET Service Request: one request, in a list of one as the specification shows."""
    try:
        stem, fmt = split_format(name)
    except Open311Error as exc:
        return _fail("xml", exc)

    async def work() -> Response:
        _check(request)
        ctx = _ctx(request)
        report = ctx.reports.get_report(int(stem)) if stem.isdigit() and len(stem) <= 18 else None
        if report is None:
            raise Open311Error(404, f"service_request_id {stem[:40]!r} not found")
        return _respond(fmt, "service_requests", _public(ctx, [report]))

    return await _run(fmt, work)


@router.get("/tokens/{name}")
async def get_token(request: Request, name: str) -> Response:
    """GET service_request_id from a token (batch services answer a POST with a token)."""
    try:
        token, fmt = split_format(name)
    except Open311Error as exc:
        return _fail("xml", exc)

    async def work() -> Response:
        _check(request)
        report = _ctx(request).reports.by_token(token) if len(token) <= 64 else None
        if report is None:
            raise Open311Error(404, f"token {token[:64]!r} not found")
        return _respond(fmt, "service_requests", [token_doc(report)])

    return await _run(fmt, work)


# --------------------------------------------------------------------------- the rest


@router.api_route(
    "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
)
async def elsewhere(request: Request, rest: str) -> Response:
    """Any other path or method under /open311/v2, answered in the specification's format."""
    fmt = "json" if rest.endswith(".json") else "xml"
    methods = _methods_of(request)
    if methods:
        allow = ", ".join(methods)
        error = Open311Error(
            405,
            f"method {request.method} not allowed here; allowed: {allow}",
            headers={"Allow": allow},
        )
    else:
        error = Open311Error(404, f"no resource /open311/v2/{rest[:80]}")
    return _fail(fmt, error)


def _methods_of(request: Request) -> list[str]:
    """Methods of the other routes of this router that match the request's path."""
    path = request.scope["path"]
    found: set[str] = set()
    for route in router.routes:
        regex = getattr(route, "path_regex", None)
        if getattr(route, "endpoint", None) is elsewhere or regex is None:
            continue
        if regex.match(path):
            found.update(getattr(route, "methods", set()) or set())
    found.discard("HEAD")
    return sorted(found)
