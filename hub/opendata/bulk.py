"""Bulk downloads at ``/open/v1`` (CONTRACT §9): a DCAT catalog, CSV files, Data Packages.

- ``GET /open/v1/catalog.json``: the datasets, as DCAT-AP in JSON-LD (its
  ``@context`` maps the short names to DCAT and Dublin Core): title, description,
  licence, update frequency (``accrualPeriodicity``), temporal and spatial
  coverage, and each dataset's distributions (CSV, Data Package) with their
  download links; and the SensorThings service.
- ``GET /open/v1/datasets/{id}.csv``: one dataset per asset type with published
  metrics, ``{asset_type}-daily``: a row per day, district and metric, from the
  release log's daily rows, re-checked against the current policy.
- ``GET /open/v1/datasets/{id}/datapackage.json``: its Frictionless Data Package
  (a Tabular Data Resource with a Table Schema) pointing at the CSV.

A file is rendered off the event loop once per release of its dataset and kept
(the ETag is its content's hash), so repeated downloads cost a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hub.api.deps import errors
from hub.api.routing import ApiRoute
from hub.api.schemas import ErrorOut
from hub.messages import DISTRICT_RE
from hub.opendata.index import Index
from hub.opendata.limits import Busy
from hub.opendata.policy import OpenDataPolicy
from hub.opendata.publisher import DAY_MS, daily_dataset
from hub.opendata.service import Download, OpenData
from hub.opendata.sta import STA_PREFIX, cached, cached_json, origin_of, service_of
from hub.opendata.state import DailyRow

OPEN_PREFIX = "/open/v1"
DAILY = "http://publications.europa.eu/resource/authority/frequency/DAILY"
CSV_FORMAT = "http://publications.europa.eu/resource/authority/file-type/CSV"
JSON_FORMAT = "http://publications.europa.eu/resource/authority/file-type/JSON"
DATA_PACKAGE = "https://specs.frictionlessdata.io/data-package/"
STA_SPEC = "http://www.opengis.net/doc/is/sensorthings/1.1"
COLUMNS = (
    "date",
    "district",
    "metric",
    "unit",
    "tier",
    "devices",
    "readings",
    "mean",
    "min",
    "max",
    "buckets",
)
_XSD = "http://www.w3.org/2001/XMLSchema#"
CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "title": "dct:title",
    "description": "dct:description",
    "identifier": "dct:identifier",
    "publisher": "dct:publisher",
    "name": "foaf:name",
    "license": {"@id": "dct:license", "@type": "@id"},
    "keyword": "dcat:keyword",
    "accrualPeriodicity": {"@id": "dct:accrualPeriodicity", "@type": "@id"},
    "temporal": "dct:temporal",
    "startDate": {"@id": "dcat:startDate", "@type": _XSD + "date"},
    "endDate": {"@id": "dcat:endDate", "@type": _XSD + "date"},
    "spatial": "dct:spatial",
    "bbox": {"@id": "dcat:bbox", "@type": "http://www.opengis.net/ont/geosparql#wktLiteral"},
    "issued": {"@id": "dct:issued", "@type": _XSD + "dateTime"},
    "modified": {"@id": "dct:modified", "@type": _XSD + "dateTime"},
    "dataset": "dcat:dataset",
    "distribution": "dcat:distribution",
    "downloadURL": {"@id": "dcat:downloadURL", "@type": "@id"},
    "accessURL": {"@id": "dcat:accessURL", "@type": "@id"},
    "mediaType": "dcat:mediaType",
    "format": {"@id": "dct:format", "@type": "@id"},
    "conformsTo": {"@id": "dct:conformsTo", "@type": "@id"},
    "service": "dcat:service",
    "endpointURL": {"@id": "dcat:endpointURL", "@type": "@id"},
    "openDataPolicyVersion": "urn:city-hub:openDataPolicyVersion",
}


class PublicRoute(ApiRoute):
    """An API route whose 422 never repeats the request (a public answer must not echo a
    name a client typed, such as a hidden metric's): what was wrong and where, not what."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The strict handler, its validation errors stripped of their inputs."""
        handler = super().get_route_handler()

        async def public_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                detail = [
                    {
                        "type": e.get("type"),
                        # an unknown parameter's name is the client's text: not repeated
                        "loc": list(e["loc"][:1])
                        if e.get("type") == "extra_forbidden"
                        else e["loc"],
                        "msg": e.get("msg"),
                    }
                    for e in exc.errors()
                ]
                return JSONResponse({"detail": detail}, status_code=422)

        return public_handler


router = APIRouter(prefix=OPEN_PREFIX, tags=["open data"], route_class=PublicRoute)

_JSON_OK: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "OK"},
    429: {"model": ErrorOut, "description": "Too many requests from this address"},
    **errors(503),
}
DatasetId = Annotated[
    str,
    Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}-daily$", description="e.g. air_quality-daily"),
]


@router.get("/catalog.json", response_class=Response, responses=_JSON_OK)
async def catalog(request: Request) -> Response:
    """The datasets (DCAT-AP, JSON-LD) and the SensorThings service; no key needed."""
    service = service_of(request)
    origin = origin_of(request, service)
    try:
        index = await service.index()
        body = await service.gate.run(partial(_catalog, service, index, origin))
    except Busy as exc:
        raise _busy(exc) from None
    return cached_json(request, body, service.settings.cache_max_age_s)


@router.get(
    "/datasets/{dataset_id}.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"},
        429: _JSON_OK[429],
        **errors(404, 503),
    },
)
async def dataset_csv(request: Request, dataset_id: DatasetId) -> Response:
    """One dataset as CSV (the columns its datapackage.json describes); no key needed."""
    service = service_of(request)
    asset_type = _asset_type(service.policy, dataset_id)
    try:
        download = await service.gate.run(partial(_csv, service, asset_type, dataset_id))
    except Busy as exc:
        raise _busy(exc) from None
    response = cached(
        request, download.body, "text/csv; charset=utf-8", service.settings.cache_max_age_s
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{dataset_id}.csv"'
    return response


@router.get(
    "/datasets/{dataset_id}/datapackage.json",
    response_class=Response,
    responses={**_JSON_OK, **errors(404, 503)},
)
async def datapackage(request: Request, dataset_id: DatasetId) -> Response:
    """The dataset's Frictionless Data Package (Table Schema); no key needed."""
    service = service_of(request)
    asset_type = _asset_type(service.policy, dataset_id)
    origin = origin_of(request, service)
    try:
        body = await service.gate.run(
            partial(_datapackage, service, asset_type, dataset_id, origin)
        )
    except Busy as exc:
        raise _busy(exc) from None
    return cached_json(request, body, service.settings.cache_max_age_s)


def _busy(exc: Busy) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        str(exc),
        headers={"Retry-After": str(exc.retry_after)},
    )


def _asset_type(policy: OpenDataPolicy, dataset_id: str) -> str:
    asset_type = dataset_id.removesuffix("-daily")
    if asset_type not in policy.asset_types():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dataset; catalog.json lists them")
    return asset_type


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _links(origin: str, dataset_id: str) -> tuple[str, str]:
    base = f"{origin}{OPEN_PREFIX}/datasets/{dataset_id}"
    return f"{base}.csv", f"{base}/datapackage.json"


def _title(policy: OpenDataPolicy, asset_type: str) -> str:
    return f"{policy.description(asset_type)}: daily figures per district"


def _description(policy: OpenDataPolicy, asset_type: str) -> str:
    parts = []
    for m in policy.metrics(asset_type):
        unit = f" ({m.unit})" if m.unit else ""
        if m.tier == "public":
            parts.append(f"{m.metric}{unit}: mean, min and max of every device's readings")
        else:
            parts.append(
                f"{m.metric}{unit}: mean of the day's published district means per "
                f"{m.bucket_ms // 60_000} min, each over at least {m.k} devices (no min or max: "
                "each would be one device's value)"
            )
    return (
        f"One row per day (UTC), district and metric of the city's {asset_type} devices. "
        + "; ".join(parts)
        + ". A day is published once it is over and its data has settled."
    )


def _published_rows(service: OpenData, asset_type: str) -> list[DailyRow]:
    """The stored daily rows the current policy still publishes."""
    rows = []
    for row in service.state.daily(asset_type):
        metric = service.policy.metric(asset_type, row.metric)
        if metric is None or metric.tier != row.tier or row.devices < metric.k:
            continue
        rows.append(row)
    return rows


async def _csv(service: OpenData, asset_type: str, dataset_id: str) -> Download:
    release = await asyncio.to_thread(service.state.dataset_release, dataset_id)
    key = (dataset_id, release, service.policy.version)
    kept = service.downloads.get(dataset_id)
    if kept is not None and kept.key == key:
        return kept
    body = await asyncio.to_thread(_render_csv, service, asset_type)
    download = Download(key, body, hashlib.sha256(body).hexdigest()[:32])
    service.downloads[dataset_id] = download
    return download


def _render_csv(service: OpenData, asset_type: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in _published_rows(service, asset_type):
        metric = service.policy.metric(asset_type, row.metric)
        assert metric is not None
        writer.writerow(
            [
                _day(row.day_ms),
                row.district,
                row.metric,
                metric.unit,
                row.tier,
                row.devices,
                row.readings,
                repr(row.mean),
                "" if row.min is None else repr(row.min),
                "" if row.max is None else repr(row.max),
                "" if row.cells is None else row.cells,
            ]
        )
    return buffer.getvalue().encode("utf-8")


def _bbox(index: Index, asset_type: str) -> str | None:
    """The coarsened places of the asset type's things, as a WKT polygon (DCAT-AP bbox)."""
    box = index.bbox(asset_type)
    if box is None:
        return None
    west, south, east, north = box
    return f"POLYGON(({west} {south},{east} {south},{east} {north},{west} {north},{west} {south}))"


async def _catalog(service: OpenData, index: Index, origin: str) -> dict[str, Any]:
    """The catalog, built again only when the index, the release log or the origin moved."""
    newest = await asyncio.to_thread(service.state.releases, limit=1)
    key = (index.built_at, newest[0].id if newest else 0, origin)
    kept = service.catalog_cache
    if kept is not None and kept[0] == key:
        return kept[1]
    body = await _build_catalog(service, index, origin)
    service.catalog_cache = (key, body)
    return body


async def _build_catalog(service: OpenData, index: Index, origin: str) -> dict[str, Any]:
    policy = service.policy
    settings = service.settings
    datasets = []
    newest = 0
    for asset_type in policy.asset_types():
        dataset_id = daily_dataset(asset_type)
        span = await asyncio.to_thread(service.state.daily_span, asset_type)
        release = await asyncio.to_thread(service.state.dataset_release, dataset_id)
        csv_url, package_url = _links(origin, dataset_id)
        entry: dict[str, Any] = {
            "@type": "dcat:Dataset",
            "@id": f"{origin}{OPEN_PREFIX}/datasets/{dataset_id}",
            "identifier": dataset_id,
            "title": _title(policy, asset_type),
            "description": _description(policy, asset_type),
            "keyword": [asset_type, *(m.metric for m in policy.metrics(asset_type)), "daily"],
            "license": settings.license_url,
            "accrualPeriodicity": DAILY,
            "openDataPolicyVersion": policy.version,
            "distribution": [
                {
                    "@type": "dcat:Distribution",
                    "title": f"{dataset_id}.csv",
                    "downloadURL": csv_url,
                    "accessURL": csv_url,
                    "mediaType": "text/csv",
                    "format": CSV_FORMAT,
                    "license": settings.license_url,
                },
                {
                    "@type": "dcat:Distribution",
                    "title": "Frictionless Data Package",
                    "downloadURL": package_url,
                    "accessURL": package_url,
                    "mediaType": "application/json",
                    "format": JSON_FORMAT,
                    "conformsTo": DATA_PACKAGE,
                    "license": settings.license_url,
                },
            ],
        }
        if span is not None:
            entry["temporal"] = {
                "@type": "dct:PeriodOfTime",
                "startDate": _day(span[0]),
                "endDate": _day(span[1] + DAY_MS - 1),
            }
        bbox = _bbox(index, asset_type)
        if bbox is not None:
            entry["spatial"] = {"@type": "dct:Location", "bbox": bbox}
        if release:
            found = await asyncio.to_thread(
                service.state.releases, kind="daily", before_id=release + 1, limit=1
            )
            if found:
                entry["modified"] = _instant(found[0].ts_ms)
                newest = max(newest, found[0].ts_ms)
        datasets.append(entry)
    out: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "dcat:Catalog",
        "@id": f"{origin}{OPEN_PREFIX}/catalog.json",
        "title": settings.title,
        "description": (
            "Sensor data the city publishes: device readings where the catalog classifies a "
            "metric public, district aggregates over at least k devices where it could "
            "describe people. Nothing internal or restricted is ever published."
        ),
        "publisher": {"@type": "foaf:Agent", "name": settings.publisher},
        "license": settings.license_url,
        "openDataPolicyVersion": policy.version,
        "dataset": datasets,
        "service": [
            {
                "@type": "dcat:DataService",
                "title": "OGC SensorThings API 1.1 (read-only)",
                "endpointURL": origin + STA_PREFIX,
                "conformsTo": STA_SPEC,
            }
        ],
    }
    if newest:
        out["modified"] = _instant(newest)
    return out


async def _datapackage(
    service: OpenData, asset_type: str, dataset_id: str, origin: str
) -> dict[str, Any]:
    policy = service.policy
    settings = service.settings
    csv_url, _ = _links(origin, dataset_id)
    metrics = policy.metrics(asset_type)
    schema = {
        "fields": [
            {"name": "date", "type": "date", "description": "The day (UTC)"},
            {
                "name": "district",
                "type": "string",
                "constraints": {"required": True, "pattern": DISTRICT_RE.pattern},
            },
            {
                "name": "metric",
                "type": "string",
                "constraints": {"required": True, "enum": [m.metric for m in metrics]},
            },
            {"name": "unit", "type": "string"},
            {
                "name": "tier",
                "type": "string",
                "description": "public: every device's readings; public_aggregate: published "
                "district means only",
                "constraints": {"required": True, "enum": ["public", "public_aggregate"]},
            },
            {
                "name": "devices",
                "type": "integer",
                "description": "Devices that reported (public_aggregate: the fewest of any "
                "bucket summed)",
                "constraints": {"required": True, "minimum": 1},
            },
            {
                "name": "readings",
                "type": "integer",
                "constraints": {"required": True, "minimum": 1},
            },
            {"name": "mean", "type": "number", "constraints": {"required": True}},
            {"name": "min", "type": "number", "description": "Empty for public_aggregate"},
            {"name": "max", "type": "number", "description": "Empty for public_aggregate"},
            {
                "name": "buckets",
                "type": "integer",
                "description": "public_aggregate: how many published district means the "
                "day's figure sums; empty for public",
                "constraints": {"minimum": 1},
            },
        ],
        "primaryKey": ["date", "district", "metric"],
        "missingValues": [""],
    }
    return {
        "profile": "tabular-data-package",
        "name": dataset_id,
        "title": _title(policy, asset_type),
        "description": _description(policy, asset_type),
        "keywords": [asset_type, *(m.metric for m in metrics)],
        "licenses": [
            {
                "name": settings.license_id,
                "path": settings.license_url,
                "title": settings.license_id,
            }
        ],
        "sources": [{"title": settings.publisher}],
        "open_data_policy_version": policy.version,
        "resources": [
            {
                "name": dataset_id,
                "path": csv_url,
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": schema,
            }
        ],
    }
