"""Errors as JSON ``{"detail": …}`` with the right status; port exceptions mapped once here."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.logging import get_logger
from hub.ports import Conflict, NotFound, RuleInvalid
from hub.store.base import StoreQueryError, StoreUnavailable

log = get_logger(__name__)


class BodyTooLarge(HTTPException):
    """The request body is larger than ``settings.api.max_body_bytes``.

    An HTTPException so FastAPI's body reader passes it through unchanged.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE, f"request body larger than {limit} bytes"
        )


#: Longest text of a rejected input echoed back in a validation error.
MAX_ECHO = 200


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot carry made printable (for error details).

    A validation error echoes the input it refused, which may be exactly what JSON
    cannot encode (a non-finite float, an unpaired surrogate, raw bytes): the error
    must still reach the caller as a 422, not become a 500 while being encoded.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str | bytes):
        text = value if isinstance(value, str) else value.decode("utf-8", "backslashreplace")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "…"
    if isinstance(value, dict):
        return {str(json_safe(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return json_safe(str(value))


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 with pydantic's error list, each error made encodable."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        if error.get("type") != "json_invalid":
            errors.append(error)
            continue
        # FastAPI says only "JSON decode error": say what is wrong (loc has the position).
        reason = error.get("ctx", {}).get("error", "")
        message = (
            f"the body is not valid JSON: {reason} (NaN, Infinity, numbers beyond the"
            " double range and unpaired surrogates are refused)"
        )
        errors.append({**error, "msg": message})
    return JSONResponse({"detail": json_safe(errors)}, status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource this request's path names: every route sharing the path
    template of the first route that matches it (``/rules/changes`` is its own resource,
    not a ``/rules/{rule_id}``)."""
    path = request.scope["path"]
    routes = list(iter_route_contexts(request.app.router.routes))
    template = next(
        (r.path for r in routes if (rx := getattr(r, "path_regex", None)) and rx.match(path)),
        None,
    )
    methods = {m for r in routes if r.path == template for m in r.methods or ()}
    methods.discard("HEAD")
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's errors as ``{"detail": …}``; 405 and OPTIONS with the path's full ``Allow``.

    Starlette answers 405 with the methods of the first route matching the path
    only; a path served by several routes (``GET`` and ``POST /devices``) must list
    them all. ``OPTIONS`` is answered (204) with the same list.
    """
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != status.HTTP_405_METHOD_NOT_ALLOWED:
        return await http_exception_handler(request, exc)
    allow = ", ".join([*allowed_methods(request), "OPTIONS"])
    if request.method == "OPTIONS":
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Allow": allow})
    return JSONResponse(
        {"detail": f"method {request.method} not allowed here; allowed: {allow}"},
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        headers={"Allow": allow},
    )


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "not found"}, status_code=404)


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "conflict"}, status_code=409)


async def _rule_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RuleInvalid)
    return JSONResponse({"detail": [str(p) for p in exc.problems]}, status_code=422)


async def _store_query(_request: Request, exc: Exception) -> JSONResponse:
    """A query the store refuses (too many points, bad range) is the caller's to fix."""
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("telemetry store unavailable", path=request.url.path, error=str(exc))
    return JSONResponse(
        {"detail": "the telemetry store is unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def install_handlers(app: FastAPI) -> None:
    """Map the ports' exceptions to statuses (the catch-all 500 is in the middleware)."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(RuleInvalid, _rule_invalid)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(StoreQueryError, _store_query)
