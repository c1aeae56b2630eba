"""Privacy as properties: over generated fleets and readings, and over generated query
options, no public answer (bodies, headers, paging links, errors) carries an internal or
restricted metric's name or value, a hidden device, a place finer than the policy, a cell of
fewer than k devices, or a cell before its delay has passed."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.catalog import load_catalog
from hub.messages import Reading
from hub.opendata.index import NAVIGATION
from hub.opendata.policy import OpenDataPolicy, PublishedMetric
from tests.unit.api.conftest import NOW_MS, make_api
from tests.unit.opendata.conftest import (
    CITY,
    DAY,
    NEVER_PUBLIC,
    SENTINEL,
    Device,
    OpenCity,
    decoded,
    open_settings,
    walk,
)

POLICY = OpenDataPolicy(load_catalog())
TYPES = load_catalog().asset_types()
STEP = 20 * 60_000


def hidden_devices(devices: list[Device]) -> list[str]:
    """Ids that must never appear: devices with nothing published device by device."""
    device_level = set(POLICY.device_level_types())
    return [d.device_id for d in devices if d.asset_type not in device_level]


def check(response: httpx.Response, devices: list[Device]) -> None:
    """Every invariant of a public answer (module docstring)."""
    # 422: the bulk API refuses unknown parameters as the operator API does
    assert response.status_code in (200, 304, 400, 404, 422), (response.status_code, response.text)
    text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    for name in NEVER_PUBLIC:
        assert name not in text, name
    assert str(int(SENTINEL)) not in text
    for device_id in hidden_devices(devices):
        assert device_id not in text, device_id
    by_id = {d.device_id: d for d in devices}
    for d in devices:
        if d.latitude is None or d.longitude is None:
            continue
        places = POLICY.decimals(d.asset_type)
        for exact in (d.latitude, d.longitude):
            if round(exact, places) != exact:
                assert repr(exact) not in text, (d.device_id, exact)
    body = decoded(response)
    if response.headers.get("content-type", "").startswith("text/csv"):
        for row in csv.DictReader(io.StringIO(response.text)):
            if row["tier"] == "public_aggregate":
                metric = POLICY.metric(row.get("asset_type") or "traffic_counter", row["metric"])
                assert metric is not None
                assert int(row["devices"]) >= metric.k
                assert row["min"] == row["max"] == ""
    for node in walk(body):
        if not isinstance(node, dict):
            continue
        _check_place(node, by_id)
        _check_cell(node)


def _check_place(node: dict[str, Any], by_id: dict[str, Device]) -> None:
    geometry = node.get("location") or node.get("feature")
    entity = node.get("@iot.id")
    if not isinstance(geometry, dict) or not isinstance(entity, str):
        return
    asset_type = entity.split(":")[1] if ":" in entity else by_id[entity].asset_type
    places = POLICY.decimals(asset_type)
    for value in geometry["coordinates"]:
        assert round(value, places) == value, (entity, value)


def _check_cell(node: dict[str, Any]) -> None:
    parameters = node.get("parameters")
    if not isinstance(parameters, dict) or "devices" not in parameters:
        return
    k = min(m.k for m in _aggregated())
    assert parameters["devices"] >= k
    interval = node.get("phenomenonTime")
    if isinstance(interval, str):
        end = datetime.fromisoformat(interval.split("/")[1]).timestamp() * 1000
        delay = min(
            m.delay_ms
            for a in POLICY.aggregate_types()
            for m in POLICY.metrics(a, "public_aggregate")
        )
        assert end + delay <= NOW_MS


def _aggregated() -> list[PublishedMetric]:
    return [m for a in POLICY.aggregate_types() for m in POLICY.metrics(a, "public_aggregate")]


def fetch(city: OpenCity, url: str, pages: int = 3) -> Iterator[httpx.Response]:
    """``url`` and up to ``pages`` - 1 pages after it, following @iot.nextLink."""
    for _ in range(pages):
        response = city.get(url.removeprefix("http://testserver"))
        yield response
        body = decoded(response)
        url = body.get("@iot.nextLink") if isinstance(body, dict) else None
        if not url:
            return


# --------------------------------------------------------------------------- generated fleets


@st.composite
def fleets(draw: st.DrawFn) -> list[Device]:
    """Devices of every asset type in up to three districts, some without a place."""
    devices = []
    for district in ("d01", "d02", "d03"):
        for asset_type in TYPES:
            for n in range(draw(st.integers(0, 7))):
                lat = draw(st.integers(51_000_000, 51_999_999)) / 1e6
                lon = draw(st.integers(7_000_000, 7_999_999)) / 1e6
                placed = draw(st.booleans()) or asset_type == "traffic_counter"
                devices.append(
                    Device(
                        f"{asset_type[:2]}x-{district}-{n}",
                        district,
                        asset_type,
                        lat if placed else None,
                        lon if placed else None,
                    )
                )
    return devices


def fleet_readings(devices: list[Device], values: st.DataObject) -> list[Reading]:
    """Readings over the last day and a half: public values plain, hidden ones sentinels."""
    catalog = load_catalog()
    out = []
    for i, device in enumerate(devices):
        spec = catalog.spec(device.asset_type)
        assert spec is not None
        every = values.draw(st.sampled_from([STEP, 3 * STEP]))
        for ts in range(NOW_MS - DAY - DAY // 2, NOW_MS, every):
            metrics: dict[str, float | bool] = {}
            for name, m in spec.metrics.items():
                if m.classification in ("internal", "restricted"):
                    metrics[name] = SENTINEL + i / 1000
                elif m.type == "bool":
                    metrics[name] = ts % 3 == 0
                else:
                    metrics[name] = round((ts // STEP % 50) + i / 100, 2)
            out.append(Reading(device.district, device.asset_type, device.device_id, ts, metrics))
    return out


def battery(city: OpenCity) -> Iterator[httpx.Response]:
    """Every kind of public answer the city gives, hidden things probed too."""
    yield city.get("/sta/v1.1")
    expand_all = {
        entity_set: ",".join(n for n in navs if n != "Observations")
        for entity_set, navs in NAVIGATION.items()
    }
    for entity_set in NAVIGATION:
        if entity_set == "Observations":
            continue
        query = urlencode({"$top": "1000", "$count": "true", "$expand": expand_all[entity_set]})
        yield from fetch(city, f"/sta/v1.1/{entity_set}?{query}")
    streams = city.json("/sta/v1.1/Datastreams?$top=1000&$select=@iot.id")["value"]
    for stream in streams:
        sid = stream["@iot.id"]
        yield from fetch(
            city,
            f"/sta/v1.1/Datastreams('{sid}')/Observations?$top=50&$count=true"
            "&$expand=Datastream,FeatureOfInterest&$orderby=phenomenonTime desc",
        )
        yield city.get(f"/sta/v1.1/Datastreams('{sid}')?$expand=Observations($top=5)")
    for device in city.devices[:10]:
        yield city.get(f"/sta/v1.1/Things('{device.device_id}')?$expand=Datastreams,Locations")
        for name in NEVER_PUBLIC[:3]:
            yield city.get(f"/sta/v1.1/Datastreams('{device.device_id}:{name}')/Observations")
    yield city.get("/open/v1/catalog.json")
    for asset_type in TYPES:
        yield city.get(f"/open/v1/datasets/{asset_type}-daily.csv")
        yield city.get(f"/open/v1/datasets/{asset_type}-daily/datapackage.json")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(devices=fleets(), values=st.data())
def test_no_public_answer_leaks_for_any_fleet(devices: list[Device], values: st.DataObject) -> None:
    """For generated fleets and readings, every answer of every kind keeps the policy."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for api in make_api(tmp, open_settings(tmp)):
            api.registry.devices.clear()
            for d in devices:
                api.registry.add(
                    d.device_id,
                    d.district,
                    d.asset_type,
                    latitude=d.latitude,
                    longitude=d.longitude,
                )
            city = OpenCity(api, devices)
            city.write(fleet_readings(devices, values))
            asyncio.run(api.opendata.publisher.publish_due())
            answers = 0
            for response in battery(city):
                check(response, devices)
                answers += 1
            assert answers > 20


# --------------------------------------------------------------------------- generated queries

PATHS = [
    "/sta/v1.1/Things",
    "/sta/v1.1/Things('fg-d01-1')",
    "/sta/v1.1/Things('d01:traffic_counter')/Datastreams",
    "/sta/v1.1/Things('mh-d01-1')",
    "/sta/v1.1/Locations",
    "/sta/v1.1/Datastreams",
    "/sta/v1.1/Datastreams('fg-d01-1:water_level_m')",
    "/sta/v1.1/Datastreams('fg-d01-1:water_level_m')/Observations",
    "/sta/v1.1/Datastreams('d01:traffic_counter:vehicles_per_min')/Observations",
    "/sta/v1.1/Datastreams('d02:traffic_counter:vehicles_per_min')/Observations",
    "/sta/v1.1/Datastreams('tc-d01-0:vehicles_per_min')/Observations",
    "/sta/v1.1/Datastreams('fg-d01-1:battery_v')/Observations",
    "/sta/v1.1/Datastreams('mh-d01-1:h2s_ppm')",
    "/sta/v1.1/Observations",
    "/sta/v1.1/Sensors",
    "/sta/v1.1/ObservedProperties('h2s_ppm')",
    "/sta/v1.1/ObservedProperties",
    "/sta/v1.1/FeaturesOfInterest",
    "/sta/v1.1/Things('sl-d01-1')/Datastreams",
    "/open/v1/datasets/manhole-daily.csv",
]
PROPERTIES = [
    "name",
    "description",
    "@iot.id",
    "result",
    "phenomenonTime",
    "resultTime",
    "properties/district",
    "properties/metric",
    "Datastream/@iot.id",
    *NEVER_PUBLIC,
    *(f"properties/{n}" for n in NEVER_PUBLIC[:3]),
]
LITERALS = st.one_of(
    st.integers(-10, 1000).map(str),
    st.sampled_from(["2025-11-23T00:00:00Z", "2025-11-24T14:00:00Z", "true", "false"]),
    st.sampled_from(["'fg-d01-1:water_level_m'", "'d01:traffic_counter:vehicles_per_min'"]),
    st.text(alphabet="xyz019 -", max_size=8).map(lambda t: "'" + t + "'"),
)
comparisons = st.builds(
    lambda p, op, v: f"{p} {op} {v}",
    st.sampled_from(PROPERTIES),
    st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
    LITERALS,
)
filters = st.lists(comparisons, min_size=1, max_size=3).map(" and ".join)
names = st.lists(st.sampled_from([*PROPERTIES, "Datastreams", "Locations", "Thing"]), max_size=4)
navigations = st.sampled_from(
    [
        "Datastreams",
        "Locations",
        "Thing",
        "Sensor",
        "ObservedProperty",
        "Observations",
        "Datastream",
        "FeatureOfInterest",
        "Things",
        *NEVER_PUBLIC[:2],
    ]
)


@st.composite
def expansions(draw: st.DrawFn) -> str:
    items = []
    for nav in draw(st.lists(navigations, max_size=2, unique=True)):
        inner = []
        if draw(st.booleans()):
            inner.append(f"$filter={draw(filters)}")
        if draw(st.booleans()):
            inner.append(f"$select={','.join(draw(names)) or 'name'}")
        if draw(st.booleans()):
            inner.append(f"$top={draw(st.integers(0, 200))}")
        items.append(f"{nav}({';'.join(inner)})" if inner else nav)
    return ",".join(items) or "Datastreams"


@st.composite
def queries(draw: st.DrawFn) -> dict[str, str]:
    options: dict[str, str] = {}
    if draw(st.booleans()):
        options["$filter"] = draw(filters)
    if draw(st.booleans()):
        options["$select"] = ",".join(draw(names)) or "name"
    if draw(st.booleans()):
        options["$expand"] = draw(expansions())
    if draw(st.booleans()):
        prop = draw(st.sampled_from(PROPERTIES))
        options["$orderby"] = f"{prop} {draw(st.sampled_from(['asc', 'desc']))}"
    if draw(st.booleans()):
        options["$top"] = str(draw(st.integers(0, 2000)))
    if draw(st.booleans()):
        options["$skip"] = str(draw(st.integers(0, 20_000)))
    if draw(st.booleans()):
        options["$count"] = draw(st.sampled_from(["true", "false"]))
    return options


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(PATHS), options=queries())
def test_no_query_option_reaches_what_is_hidden(
    shared_city: OpenCity, path: str, options: dict[str, str]
) -> None:
    """Any combination of $filter (on hidden properties too), $select, $expand, $orderby, $top,
    $skip and $count, on any path, and the pages after it: every answer keeps the policy."""
    url = path + ("?" + urlencode(options) if options else "")
    for response in fetch(shared_city, url):
        check(response, CITY)


def test_the_checks_would_see_a_leak(shared_city: OpenCity) -> None:
    """The invariants are not vacuous: a hidden name, value, device or exact place in an
    answer fails them."""
    import pytest

    for leak in ("h2s_ppm", str(SENTINEL), "mh-d01-1", repr(CITY[-3].latitude)):
        fake = httpx.Response(200, text=f'{{"value": ["{leak}"]}}')
        with pytest.raises(AssertionError):
            check(fake, CITY)
    cell = httpx.Response(
        200,
        json={"parameters": {"devices": 4}, "phenomenonTime": "x/2025-11-24T15:30:00Z"},
    )
    with pytest.raises(AssertionError):
        check(cell, CITY)
