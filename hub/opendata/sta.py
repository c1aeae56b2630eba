"""OGC SensorThings API 1.1, read-only, at ``/sta/v1.1`` (CONTRACT §9; docs/open-data.md).

Resource paths: the service root; an entity set (``/Things``); an entity
(``/Things('fg-d03-001')``); one navigation property of an entity
(``/Things('fg-d03-001')/Datastreams``, ``/Datastreams('…')/Observations``).
Property paths, ``$ref``, ``$value`` and deeper paths are a 400. Writes are 405.

Observations are listed through their Datastream (``/Datastreams(id)/Observations``,
or ``/Observations?$filter=Datastream/@iot.id eq 'id' and …``): a city's
observations all at once is not an answer anyone can page through.

Every answer is built from the public index and the policy (hub.opendata.index,
hub.opendata.policy); what they do not list is never read, so no query option can
reach it. Answers carry an ``ETag`` (a repeat with ``If-None-Match`` is a 304) and
``Cache-Control: public``; errors are ``{"code", "message", "detail"}`` (the
message SensorThings clients print, the detail every hub client reads).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Request, Response

from hub.opendata.index import (
    ENTITY_SETS,
    FILTERABLE,
    NAVIGATION,
    PROPERTIES,
    Index,
    Record,
)
from hub.opendata.limits import Busy
from hub.opendata.observations import Observation, newest_first, parse_observation_id
from hub.opendata.odata import (
    SKIPTOKEN,
    Expand,
    Options,
    QueryError,
    matches,
    parse_filter,
    parse_options,
)
from hub.opendata.service import OpenData
from hub.store.base import StoreUnavailable

STA_PREFIX = "/sta/v1.1"
#: Largest $skip on an in-memory entity set (paging links use it too).
MAX_SKIP_ENTITIES = 10_000_000
#: Parents per page when each expands its Observations (one store query each).
MAX_PARENTS_EXPANDING_OBSERVATIONS = 20
#: Observations per expanded Datastream at most.
MAX_EXPANDED_OBSERVATIONS = 100
CONFORMANCE = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
]
_SEGMENT = re.compile(r"(?P<set>[A-Za-z$]+)(?:\((?P<id>'(?:[^']|'')*'|[0-9]+)\))?")

router = APIRouter(tags=["open data"])


class NotThere(Exception):
    """A resource that does not exist (or is not public: the same answer)."""


def service_of(request: Request) -> OpenData:
    """The open-data service the app was created with."""
    service: OpenData = request.app.state.opendata
    return service


def origin_of(request: Request, service: OpenData) -> str:
    """Scheme and host the links in answers start with (``HUB_OPEN_DATA__BASE_URL``, or the
    address the request came to)."""
    return service.settings.base_url or str(request.base_url).rstrip("/")


@router.get(STA_PREFIX, include_in_schema=False)
@router.get(STA_PREFIX + "/{path:path}", include_in_schema=False)
async def sensorthings(request: Request, path: str = "") -> Response:
    """Any SensorThings resource (module docstring)."""
    service = service_of(request)
    origin = origin_of(request, service)
    try:
        options = parse_options(
            list(request.query_params.multi_items()), max_skip=MAX_SKIP_ENTITIES
        )
        index = await service.index()
        resolver = _Resolver(service, index, origin)
        body = await service.gate.run(partial(resolver.resolve, path, options))
    except QueryError as exc:
        return error(400, str(exc))
    except NotThere as exc:
        return error(404, str(exc) or "no such entity")
    except Busy as exc:
        return error(503, str(exc), retry_after=exc.retry_after)
    except StoreUnavailable:
        return error(503, "the telemetry store is unavailable; try again shortly", retry_after=5)
    return cached_json(request, body, service.settings.cache_max_age_s)


def error(status: int, message: str, *, retry_after: int | None = None) -> Response:
    """An error answer: ``{"code", "message", "detail"}``, never cached."""
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(
        orjson.dumps({"code": status, "message": message, "detail": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def cached_json(request: Request, body: Any, max_age_s: int) -> Response:
    """``body`` as JSON with an ETag and Cache-Control; a 304 when the client has it."""
    data = orjson.dumps(body)
    return cached(request, data, "application/json", max_age_s)


def cached(request: Request, data: bytes, media_type: str, max_age_s: int) -> Response:
    """``data`` with a strong ETag of its content; 304 to a matching ``If-None-Match``."""
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age_s}"}
    wanted = request.headers.get("if-none-match", "")
    if etag in (t.strip() for t in wanted.split(",")) or wanted.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def iso(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def encode(options: Options, **replace: str | None) -> list[tuple[str, str]]:
    """``options`` as query pairs again (for links), with ``replace`` set or removed."""
    pairs: dict[str, str | None] = {
        "$top": None if options.top is None else str(options.top),
        "$skip": str(options.skip) if options.skip else None,
        "$count": "true" if options.count else None,
        "$orderby": ",".join(f"{p} {'desc' if d else 'asc'}" for p, d in options.orderby) or None,
        "$select": ",".join(options.select) if options.select is not None else None,
        "$expand": ",".join(_expand_text(e) for e in options.expand) or None,
        "$filter": options.filter_text,
        SKIPTOKEN: options.skiptoken,
    }
    pairs.update(replace)
    return [(k, v) for k, v in pairs.items() if v is not None]


def _expand_text(item: Expand) -> str:
    inner = ";".join(f"{k}={v}" for k, v in encode(item.options))
    return f"{item.nav}({inner})" if inner else item.nav


def link(url: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``pairs`` as its query string."""
    if not pairs:
        return url
    return url + "?" + urlencode(list(pairs), quote_via=quote, safe="$'(),:@/")


class _Resolver:
    """Answers one request against one index snapshot."""

    def __init__(self, service: OpenData, index: Index, origin: str) -> None:
        self.service = service
        self.index = index
        self.origin = origin
        self.base = origin + STA_PREFIX
        self.settings = service.settings

    # ------------------------------------------------------------------ paths

    async def resolve(self, path: str, options: Options) -> Any:
        parts = [p for p in path.split("/") if p]
        if any(p.startswith("$") for p in parts):
            raise QueryError("$ref, $value and other path options are not supported")
        if not parts:
            _only(options, "$select", what="the service root")
            return self.root()
        if len(parts) > 2:
            raise QueryError(
                "a path names an entity set, an entity, or one navigation property of an "
                "entity; property paths, $ref and $value are not supported"
            )
        entity_set, entity_id = _segment(parts[0])
        if entity_set not in ENTITY_SETS:
            raise NotThere("no such entity set; the service root lists them")
        if len(parts) == 1:
            if entity_id is None:
                return await self.collection(entity_set, options, f"{self.base}/{entity_set}")
            _only(options, "$select", "$expand", what="an entity")
            return await self.entity(entity_set, entity_id, options)
        if entity_id is None:
            raise QueryError("navigation follows an entity: EntitySet('id')/Navigation")
        nav, nav_id = _segment(parts[1])
        target = NAVIGATION[entity_set].get(nav)
        if target is None or nav_id is not None:
            raise QueryError(
                "that entity has no such navigation property (or property paths, $ref and "
                "$value, which are not supported)"
            )
        return await self.navigate(entity_set, entity_id, nav, target, options)

    def root(self) -> dict[str, Any]:
        return {
            "value": [{"name": name, "url": f"{self.base}/{name}"} for name in ENTITY_SETS],
            "serverSettings": {"conformance": CONFORMANCE},
            "openDataPolicy": {
                "version": self.service.policy.version,
                "catalog": f"{self.origin}/open/v1/catalog.json",
            },
        }

    async def entity(self, entity_set: str, entity_id: str, options: Options) -> dict[str, Any]:
        if entity_set == "Observations":
            observation = await self._observation(entity_id)
            return await self.observation_json(observation, options)
        record = self.index.get(entity_set, entity_id)
        if record is None:
            raise NotThere(f"no such entity in {entity_set}")
        return await self.record_json(record, options)

    async def navigate(
        self,
        entity_set: str,
        entity_id: str,
        nav: str,
        target: tuple[str, bool],
        options: Options,
    ) -> Any:
        target_set, many = target
        url = f"{self.base}/{entity_set}('{entity_id}')/{nav}"
        if entity_set == "Observations":
            observation = await self._observation(entity_id)
            linked = self._observation_link(observation, nav)
            _only(options, "$select", "$expand", what="an entity")
            if linked is None:
                raise NotThere("that observation has no such entity")
            return await self.record_json(linked, options)
        record = self.index.get(entity_set, entity_id)
        if record is None:
            raise NotThere(f"no such entity in {entity_set}")
        if target_set == "Observations":
            if entity_set != "Datastreams":
                raise QueryError(_THROUGH_A_DATASTREAM)
            return await self.observations(record.id, options, url)
        if not many:
            _only(options, "$select", "$expand", what="an entity")
            linked_id = record.links.get(nav)
            found = self.index.get(target_set, linked_id) if isinstance(linked_id, str) else None
            if found is None:
                raise NotThere("that entity has no such linked entity")
            return await self.record_json(found, options)
        records = self._linked(record, nav, target_set)
        return await self.records_page(target_set, records, options, url)

    # ------------------------------------------------------------------ collections

    async def collection(self, entity_set: str, options: Options, url: str) -> dict[str, Any]:
        if entity_set == "Observations":
            flt = parse_filter(options.filter_text, FILTERABLE["Observations"], "Observations")
            streams = {str(c.value) for c in flt.on("Datastream/@iot.id") if c.op == "eq"}
            if len(streams) != 1:
                raise QueryError(_THROUGH_A_DATASTREAM)
            (stream_id,) = streams
            if stream_id not in self.index.streams:
                return {"value": [], **({"@iot.count": 0} if options.count else {})}
            return await self.observations(stream_id, options, url)
        return await self.records_page(entity_set, self.index.records(entity_set), options, url)

    async def records_page(
        self, entity_set: str, records: list[Record], options: Options, url: str
    ) -> dict[str, Any]:
        """One page of index entities: filtered, ordered, counted, expanded, linked."""
        if options.skiptoken is not None:
            raise QueryError("$skiptoken is only valid in the links this service gives")
        matched = self._filtered(entity_set, records, options)
        asked = self.settings.default_page if options.top is None else options.top
        top = min(asked, self.settings.max_page)
        if any(e.nav == "Observations" for e in options.expand):
            top = min(top, MAX_PARENTS_EXPANDING_OBSERVATIONS)
        page = matched[options.skip : options.skip + top]
        out: dict[str, Any] = {}
        if options.count:
            out["@iot.count"] = len(matched)
        out["value"] = [await self.record_json(r, options) for r in page]
        if top and options.skip + top < len(matched):
            out["@iot.nextLink"] = link(url, encode(options, **{"$skip": str(options.skip + top)}))
        return out

    def _filtered(self, entity_set: str, records: list[Record], options: Options) -> list[Record]:
        filterable = FILTERABLE[entity_set]
        flt = parse_filter(options.filter_text, filterable, entity_set)
        matched = [r for r in records if matches(flt, r.values)] if flt.comparisons else records
        for path, _ in options.orderby:
            if path not in filterable:
                raise QueryError(
                    f"$orderby: {entity_set} can be ordered by "
                    + ", ".join(sorted(filterable))
                    + " only"
                )
        if options.orderby:
            matched = list(matched)
            for path, descending in reversed(options.orderby):
                matched.sort(key=partial(_value_of, path), reverse=descending)
        return matched

    async def observations(self, stream_id: str, options: Options, url: str) -> dict[str, Any]:
        """One page of a Datastream's Observations (hub.opendata.observations)."""
        stream = self.index.streams[stream_id]
        flt = parse_filter(options.filter_text, FILTERABLE["Observations"], "Observations")
        descending = newest_first(options.orderby)
        top = min(
            self.settings.default_page if options.top is None else options.top,
            self.settings.max_page,
        )
        if any(e.nav == "Observations" for e in options.expand):
            raise QueryError("Observations have no Observations to expand")
        resume = _skiptoken(options.skiptoken)
        source = self.service.observations
        page = await source.page(
            stream, flt, descending=descending, top=top, skip=options.skip, resume_ms=resume
        )
        out: dict[str, Any] = {}
        if options.count:
            out["@iot.count"] = await source.count(stream, flt)
        out["value"] = [await self.observation_json(o, options) for o in page.items]
        if page.resume_ms is not None:
            out["@iot.nextLink"] = link(
                url,
                encode(
                    options,
                    **{"$skip": str(page.skip_left) if page.skip_left else None},
                    **{SKIPTOKEN: str(page.resume_ms)},
                ),
            )
        return out

    # ------------------------------------------------------------------ entities

    def _linked(self, record: Record, nav: str, target_set: str) -> list[Record]:
        ids = record.links.get(nav)
        found = (self.index.get(target_set, i) for i in (ids if isinstance(ids, list) else []))
        return [r for r in found if r is not None]

    def self_link(self, entity_set: str, entity_id: str) -> str:
        return f"{self.base}/{entity_set}('{entity_id}')"

    async def record_json(self, record: Record, options: Options) -> dict[str, Any]:
        entity_set = record.entity_set
        wanted = _selected(entity_set, options.select)
        self_link = self.self_link(entity_set, record.id)
        out: dict[str, Any] = {}
        if wanted is None or "@iot.id" in wanted:
            out["@iot.id"] = record.id
        if wanted is None or "@iot.selfLink" in wanted:
            out["@iot.selfLink"] = self_link
        for prop in PROPERTIES[entity_set]:
            if wanted is None or prop in wanted:
                value = record.body[prop]
                out[prop] = self.origin + value if prop == "metadata" else value
        expanded = {e.nav: e for e in options.expand}
        for nav, (target_set, many) in NAVIGATION[entity_set].items():
            if nav in expanded:
                out.update(await self._expanded(record, nav, target_set, many, expanded[nav]))
            elif (wanted is None or nav in wanted) and record.links.get(nav) is not None:
                out[f"{nav}@iot.navigationLink"] = f"{self_link}/{nav}"
        _unknown_expands(entity_set, expanded)
        return out

    async def _expanded(
        self, record: Record, nav: str, target_set: str, many: bool, item: Expand
    ) -> dict[str, Any]:
        url = f"{self.self_link(record.entity_set, record.id)}/{nav}"
        if target_set == "Observations":
            if record.entity_set != "Datastreams":
                raise QueryError(_THROUGH_A_DATASTREAM)
            options = item.options
            capped = min(
                MAX_EXPANDED_OBSERVATIONS,
                self.settings.default_page if options.top is None else options.top,
            )
            page = await self.observations(record.id, _replace_top(options, capped), url)
            return _nested(nav, page)
        if not many:
            _only(item.options, "$select", what="an expanded entity")
            linked = record.links.get(nav)
            found = self.index.get(target_set, linked) if isinstance(linked, str) else None
            if found is None:
                return {}
            return {nav: await self.record_json(found, item.options)}
        records = self._linked(record, nav, target_set)
        if item.options.expand:
            raise QueryError("$expand goes one level deep: no $expand inside an $expand")
        return _nested(nav, await self.records_page(target_set, records, item.options, url))

    async def _observation(self, entity_id: str) -> Observation:
        parsed = parse_observation_id(entity_id)
        stream = self.index.streams.get(parsed[0]) if parsed else None
        if parsed is None or stream is None:
            raise NotThere("no such entity in Observations")
        found = await self.service.observations.one(stream, parsed[1])
        if found is None:
            raise NotThere("no such entity in Observations")
        return found

    def _observation_link(self, observation: Observation, nav: str) -> Record | None:
        if nav == "Datastream":
            return self.index.get("Datastreams", observation.stream.id)
        feature = observation.stream.feature_id
        return self.index.get("FeaturesOfInterest", feature) if feature else None

    async def observation_json(self, observation: Observation, options: Options) -> dict[str, Any]:
        wanted = _selected("Observations", options.select)
        self_link = self.self_link("Observations", observation.id)
        if observation.end_ms is None:
            phenomenon = iso(observation.start_ms)
            result_time = phenomenon
        else:
            phenomenon = f"{iso(observation.start_ms)}/{iso(observation.end_ms)}"
            result_time = iso(observation.end_ms)
        body: dict[str, Any] = {
            "phenomenonTime": phenomenon,
            "resultTime": result_time,
            "result": observation.result,
        }
        if observation.devices is not None:
            body["parameters"] = {
                "devices": observation.devices,
                "readings": observation.readings,
                "aggregate": "mean",
            }
        out: dict[str, Any] = {}
        if wanted is None or "@iot.id" in wanted:
            out["@iot.id"] = observation.id
        if wanted is None or "@iot.selfLink" in wanted:
            out["@iot.selfLink"] = self_link
        for prop in PROPERTIES["Observations"]:
            if (wanted is None or prop in wanted) and prop in body:
                out[prop] = body[prop]
        expanded = {e.nav: e for e in options.expand}
        _unknown_expands("Observations", expanded)
        for nav in NAVIGATION["Observations"]:
            linked = self._observation_link(observation, nav)
            if linked is None:
                continue
            if nav in expanded:
                _only(expanded[nav].options, "$select", what="an expanded entity")
                out[nav] = await self.record_json(linked, expanded[nav].options)
            elif wanted is None or nav in wanted:
                out[f"{nav}@iot.navigationLink"] = f"{self_link}/{nav}"
        return out


_THROUGH_A_DATASTREAM = (
    "Observations are listed through their Datastream: Datastreams('id')/Observations, or "
    "Observations?$filter=Datastream/@iot.id eq 'id'"
)


def _value_of(path: str, record: Record) -> str:
    return record.values.get(path, "")


def _segment(text: str) -> tuple[str, str | None]:
    match = _SEGMENT.fullmatch(text)
    if match is None:
        raise QueryError("a path segment looks like Things or Things('id')")
    raw = match.group("id")
    if raw is None:
        return match.group("set"), None
    if raw.startswith("'"):
        return match.group("set"), raw[1:-1].replace("''", "'")
    return match.group("set"), raw


def _only(options: Options, *allowed: str, what: str) -> None:
    given = {
        "$top": options.top is not None,
        "$skip": bool(options.skip),
        "$count": options.count,
        "$orderby": bool(options.orderby),
        "$select": options.select is not None,
        "$expand": bool(options.expand),
        "$filter": options.filter_text is not None,
        SKIPTOKEN: options.skiptoken is not None,
    }
    extra = [k for k, v in given.items() if v and k not in allowed]
    if extra:
        raise QueryError(
            f"{', '.join(extra)} cannot apply to {what}; it takes {', '.join(allowed)}"
        )


def _selected(entity_set: str, select: tuple[str, ...] | None) -> set[str] | None:
    if select is None:
        return None
    allowed = {"@iot.id", "@iot.selfLink", *PROPERTIES[entity_set], *NAVIGATION[entity_set]}
    if any(name not in allowed for name in select):
        raise QueryError(f"$select: {entity_set} have " + ", ".join(sorted(allowed)) + " only")
    return set(select)


def _unknown_expands(entity_set: str, expanded: dict[str, Expand]) -> None:
    if any(nav not in NAVIGATION[entity_set] for nav in expanded):
        raise QueryError(
            f"$expand: {entity_set} have " + ", ".join(NAVIGATION[entity_set]) + " only"
        )


def _nested(nav: str, page: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {nav: page["value"]}
    if "@iot.count" in page:
        out[f"{nav}@iot.count"] = page["@iot.count"]
    if "@iot.nextLink" in page:
        out[f"{nav}@iot.nextLink"] = page["@iot.nextLink"]
    return out


def _replace_top(options: Options, top: int) -> Options:
    return replace(options, top=top)


def _skiptoken(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        raise QueryError("$skiptoken is only valid in the links this service gives")
    return int(text)
