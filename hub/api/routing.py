"""How every API route reads a request: strict JSON bodies, no unknown query parameters.

Bodies are decoded with orjson, which accepts exactly RFC 8259 JSON restricted as
I-JSON (RFC 7493) asks: no ``NaN``/``Infinity`` (not JSON at all), no number beyond
the double range (``1e999``), no unpaired surrogate (``"\\ud800"``). Python's
``json`` module accepts all three, and each used to travel into a model, a store or
a validation error that could then not be encoded (a 500). Rejected here, they are
a 422 ``json_invalid`` error saying what is wrong, before any model sees them.

A query parameter the route does not declare is a 422 too: a mistyped filter
(``?distrcit=d03``) would otherwise be ignored and answer the unfiltered list.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


class StrictJsonRequest(Request):
    """A request whose ``json()`` is orjson's strict decoder (see the module docstring)."""

    async def json(self) -> Any:
        """The body as JSON; raises ``orjson.JSONDecodeError`` (a ``json.JSONDecodeError``)."""
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


def _query_names(dependant: Dependant) -> Iterator[str]:
    for field in dependant.query_params:
        yield field.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


class ApiRoute(APIRoute):
    """An API route: strict JSON bodies and 422 for query parameters it does not declare."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The usual handler, given a strict request after the query names are checked."""
        handler = super().get_route_handler()
        declared = frozenset(_query_names(self.dependant))

        async def strict_handler(request: Request) -> Response:
            unknown = [name for name in request.query_params if name not in declared]
            if unknown:
                allowed = ", ".join(sorted(declared)) or "none"
                raise RequestValidationError(
                    [
                        {
                            "type": "extra_forbidden",
                            "loc": ("query", name),
                            "msg": f"unknown query parameter; this endpoint takes: {allowed}",
                            "input": request.query_params.getlist(name)[0],
                        }
                        for name in dict.fromkeys(unknown)
                    ]
                )
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
