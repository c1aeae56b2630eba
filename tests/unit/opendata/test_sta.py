"""The SensorThings API as a client meets it: entities and paths, every query option, paging
by nextLink, errors, caching, the policy header, CORS, the rate limit and the query gate."""

from __future__ import annotations

import asyncio
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.types import Message, Receive, Scope, Send

from hub.api.ratelimit import RateLimiter
from hub.opendata.limits import QueryGate
from hub.opendata.middleware import OpenDataMiddleware
from hub.opendata.policy import POLICY_HEADER
from tests.unit.api.conftest import NOW_MS
from tests.unit.opendata.conftest import (
    DAY,
    HOUR,
    STEP,
    OpenCity,
    make_city,
)

STA = "/sta/v1.1"
GAUGE = "fg-d01-1:water_level_m"
AREA = "d01:traffic_counter:vehicles_per_min"


def test_root_lists_the_entity_sets_and_the_policy(shared_city: OpenCity) -> None:
    """The service root names every entity set with its URL, the conformance classes and
    the policy version."""
    city = shared_city
    root = city.json(STA)
    names = [e["name"] for e in root["value"]]
    assert names == [
        "Things",
        "Locations",
        "Datastreams",
        "Sensors",
        "ObservedProperties",
        "Observations",
        "FeaturesOfInterest",
    ]
    assert root["value"][0]["url"] == "http://testserver/sta/v1.1/Things"
    assert root["openDataPolicy"]["version"] == city.api.opendata.policy.version
    assert any("datamodel" in c for c in root["serverSettings"]["conformance"])


def test_things_are_public_devices_and_aggregate_areas(shared_city: OpenCity) -> None:
    """Devices with a public metric are Things; each district's traffic counters are one
    area Thing; manholes and the water main are not there at all."""
    city = shared_city
    ids = [t["@iot.id"] for t in city.json(f"{STA}/Things?$top=100")["value"]]
    assert ids == sorted(ids)
    assert set(ids) == {
        "aq-d02-1",
        "br-d02-1",
        "d01:traffic_counter",
        "d02:traffic_counter",
        "fg-d01-1",
        "fg-d01-2",
        "sl-d01-1",
    }
    gauge = city.json(f"{STA}/Things('fg-d01-1')")
    assert gauge["properties"] == {
        "kind": "device",
        "district": "d01",
        "asset_type": "flood_gauge",
    }
    assert gauge["Datastreams@iot.navigationLink"].endswith("/Things('fg-d01-1')/Datastreams")
    streams = city.json(f"{STA}/Things('fg-d01-1')/Datastreams")["value"]
    assert [s["@iot.id"] for s in streams] == ["fg-d01-1:rainfall_mm_h", GAUGE]
    assert streams[1]["unitOfMeasurement"]["symbol"] == "m"
    assert streams[1]["observationType"].endswith("OM_Measurement")
    assert city.get(f"{STA}/Things('mh-d01-1')").status_code == 404


def test_locations_are_coarsened_to_the_types_precision(shared_city: OpenCity) -> None:
    """A flood gauge's place has 3 decimals; an area's is its counters' mean place at 2."""
    city = shared_city
    gauge = city.json(f"{STA}/Things('fg-d01-1')/Locations")["value"][0]
    assert gauge["location"] == {"type": "Point", "coordinates": [7.488, 51.499]}
    area = city.json(f"{STA}/Locations('d01:traffic_counter')")
    assert area["location"]["coordinates"] == [7.5, 51.5]
    assert city.json(f"{STA}/Things('br-d02-1')/Locations")["value"] == []  # no place known
    assert city.json(f"{STA}/FeaturesOfInterest('fg-d01-1')")["feature"] == gauge["location"]
    # d02 has 3 counters, under k: its area has no place (it would be too close to one device)
    assert city.json(f"{STA}/Things('d02:traffic_counter')/Locations")["value"] == []


def test_observations_page_through_next_links(shared_city: OpenCity) -> None:
    """$top pages of a device's readings, oldest first, each ending with an @iot.nextLink that
    gives the next page; following them yields every reading once, in order."""
    city = shared_city
    url = f"{STA}/Datastreams('{GAUGE}')/Observations?$top=100"
    seen: list[str] = []
    pages = 0
    while url:
        page = city.json(url.removeprefix("http://testserver"))
        seen.extend(o["phenomenonTime"] for o in page["value"])
        url = page.get("@iot.nextLink", "")
        pages += 1
    expected = 2 * DAY // STEP
    assert len(seen) == expected
    assert seen == sorted(seen)
    assert len(set(seen)) == expected
    assert pages == expected // 100 + 1


def test_observation_options(shared_city: OpenCity) -> None:
    """$filter on time and result, $orderby desc, $select, $count, $skip, $expand one level."""
    city = shared_city
    since = "2025-11-24T12:00:00Z"
    url = (
        f"{STA}/Datastreams('{GAUGE}')/Observations?$filter=phenomenonTime ge {since}"
        " and result gt 1.5&$orderby=phenomenonTime desc&$count=true&$top=3&$skip=1"
        "&$select=result,phenomenonTime&$expand=Datastream($select=name)"
    )
    page = city.json(url)
    matching = [
        r
        for r in city.readings
        if r.device_id == "fg-d01-1"
        and r.ts_ms >= NOW_MS - 4 * HOUR
        and r.metrics["water_level_m"] > 1.5
    ]
    assert page["@iot.count"] == len(matching)
    newest = sorted(matching, key=lambda r: -r.ts_ms)[1:4]
    assert [o["result"] for o in page["value"]] == [r.metrics["water_level_m"] for r in newest]
    assert set(page["value"][0]) == {"result", "phenomenonTime", "Datastream"}
    assert page["value"][0]["Datastream"] == {"name": "water_level_m of fg-d01-1"}
    assert "$skiptoken=" in page["@iot.nextLink"]
    one = city.json(f"{STA}/Observations('{GAUGE}:{NOW_MS - STEP}')")
    assert one["phenomenonTime"] == "2025-11-24T15:50:00.000Z"
    by_filter = city.json(
        f"{STA}/Observations?$filter=Datastream/@iot.id eq '{GAUGE}'"
        "&$top=1&$orderby=resultTime desc"
    )
    assert by_filter["value"][0]["@iot.id"] == one["@iot.id"]


def test_aggregate_observations_are_the_published_cells(shared_city: OpenCity) -> None:
    """An area Datastream's observations are hourly means over at least k devices, with the
    hour as phenomenonTime, its end as resultTime and the devices in parameters; comparisons
    on the hour work as on every instant of it."""
    city = shared_city
    page = city.json(
        f"{STA}/Datastreams('{AREA}')/Observations?$orderby=phenomenonTime desc&$top=2"
    )
    newest = page["value"][0]
    assert newest["phenomenonTime"] == "2025-11-24T14:00:00.000Z/2025-11-24T15:00:00.000Z"
    assert newest["resultTime"] == "2025-11-24T15:00:00.000Z"
    assert newest["parameters"] == {"devices": 6, "readings": 36, "aggregate": "mean"}
    before = city.json(
        f"{STA}/Datastreams('{AREA}')/Observations?$filter=phenomenonTime lt 2025-11-24T15:00:00Z"
        "&$orderby=phenomenonTime desc&$top=1"
    )
    assert before["value"][0]["@iot.id"] == newest["@iot.id"]  # ends at 15:00: lt holds
    after = city.json(
        f"{STA}/Datastreams('{AREA}')/Observations?$filter=phenomenonTime gt 2025-11-24T14:00:00Z"
    )
    assert after["value"] == []  # starts at 14:00: not after it
    assert city.json(f"{STA}/Datastreams('{AREA}')")["properties"]["k"] == 5


def test_expand_select_filter_and_orderby_on_entities(shared_city: OpenCity) -> None:
    """$expand of a to-many and a to-one navigation with their own options; $filter and
    $orderby on entity properties; $count with $top."""
    city = shared_city
    things = city.json(
        f"{STA}/Things?$filter=properties/kind eq 'device' and properties/district eq 'd01'"
        "&$orderby=name desc&$count=true&$top=1"
        "&$expand=Datastreams($select=name;$orderby=name;$top=1;$count=true),Locations"
    )
    assert things["@iot.count"] == 3
    first = things["value"][0]
    assert first["@iot.id"] == "sl-d01-1"
    assert first["Datastreams"] == [{"name": "lamp_on of sl-d01-1"}]
    assert first["Datastreams@iot.count"] == 1
    assert len(first["Locations"]) == 1
    assert "$skip=1" in things["@iot.nextLink"]
    stream = city.json(f"{STA}/Datastreams('{GAUGE}')?$expand=Thing,Sensor,ObservedProperty")
    assert stream["Thing"]["@iot.id"] == "fg-d01-1"
    assert stream["Sensor"]["@iot.id"] == "flood_gauge"
    assert stream["ObservedProperty"]["definition"] == "urn:city-hub:metric:water_level_m"
    expanded = city.json(f"{STA}/Datastreams('{GAUGE}')?$expand=Observations($top=2)")
    assert len(expanded["Observations"]) == 2
    assert "Observations@iot.nextLink" in expanded


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/Things?$filter=name eq 'a' or name eq 'b'", 400, "'or' is not supported"),
        ("/Things?$expand=Datastreams($expand=Observations)", 400, "one level deep"),
        ("/Things?$expand=Datastreams/Observations", 400, "one level deep"),
        ("/Things?$select=secret", 400, "$select: Things have"),
        ("/Things?$orderby=result", 400, "can be ordered by"),
        ("/Things?$expand=Sensors", 400, "$expand: Things have"),
        ("/Things('fg-d01-1')?$top=1", 400, "cannot apply to an entity"),
        ("/Things('fg-d01-1')/name", 400, "property paths"),
        ("/Things('fg-d01-1')/Datastreams/Observations", 400, "property paths"),
        ("/Things/$ref", 400, "$ref, $value and other path options are not supported"),
        ("/Things('fg-d01-1')/name/$value", 400, "$ref, $value"),
        ("/Things('fg-d01-1", 400, "a path segment looks like"),
        ("/Observations", 400, "listed through their Datastream"),
        ("/FeaturesOfInterest('fg-d01-1')/Observations", 400, "through their Datastream"),
        (f"/Datastreams('{GAUGE}')/Observations?$orderby=result", 400, "ordered by phenomenonTime"),
        (f"/Datastreams('{GAUGE}')/Observations?$skip=10001", 400, "follow @iot.nextLink"),
        (f"/Datastreams('{GAUGE}')/Observations?$skiptoken=abc", 400, "$skiptoken"),
        ("/Things?$skiptoken=1", 400, "$skiptoken"),
        ("/Things?$top=x", 400, "whole number"),
        ("/Things?district=d01", 400, "unknown query option"),
        ("/Robots", 404, "no such entity set"),
        ("/Things('nobody')", 404, "no such entity"),
        ("/Things(42)", 404, "no such entity"),
        (f"/Observations('{GAUGE}:1')", 404, "no such entity"),
        ("/Observations('h2s:1')", 404, "no such entity"),
    ],
)
def test_errors_are_clear_and_never_500(
    shared_city: OpenCity, path: str, status: int, says: str
) -> None:
    """Outside the subset: 400 saying what is supported; absent (or hidden): 404; both as
    {code, message, detail}, not cached, with the policy header."""
    city = shared_city
    response = city.get(STA + path)
    assert response.status_code == status, response.text
    body = response.json()
    assert says in body["message"]
    assert body["detail"] == body["message"]
    assert body["code"] == status
    assert response.headers["cache-control"] == "no-store"
    assert response.headers[POLICY_HEADER] == city.api.opendata.policy.version


def test_writes_are_refused(shared_city: OpenCity) -> None:
    """The API is read-only: POST, PATCH and DELETE are 405."""
    city = shared_city
    for method in ("POST", "PATCH", "DELETE"):
        response = city.api.client.request(method, f"{STA}/Things", json={"name": "x"})
        assert response.status_code == 405, method


def test_answers_are_cacheable_and_revalidate(shared_city: OpenCity) -> None:
    """Every 200 has an ETag and Cache-Control: public; the same ETag in If-None-Match is a 304
    without a body; anything can be read by any page (CORS) and says its policy."""
    city = shared_city
    first = city.get(f"{STA}/Things")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=60"
    assert first.headers["access-control-allow-origin"] == "*"
    assert "ETag" in first.headers["access-control-expose-headers"]
    assert first.headers[POLICY_HEADER] == city.api.opendata.policy.version
    again = city.get(f"{STA}/Things", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = city.get(f"{STA}/Things?$top=1", headers={"If-None-Match": etag})
    assert other.status_code == 200
    preflight = city.api.client.options(
        f"{STA}/Things",
        headers={"Origin": "https://portal.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_public_requests_are_not_audited(city: OpenCity) -> None:
    """Anonymous reads leave no row in the audit log (a flood of them must not be a flood of
    writes), rate-limited ones included."""
    city.api.opendata.limiter = RateLimiter(rate_per_s=1, burst=1)
    for _ in range(3):
        city.get(f"{STA}/Things")
    count = city.api.ctx.conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    assert count == 0


def test_rate_limit_per_client_address(tmp_path: Path) -> None:
    """A burst per address, then 429 with Retry-After (as {code, message, detail}); tokens come
    back with time; another address (named by a trusted proxy) has its own bucket."""
    for city in make_city(tmp_path, rate_per_s=1, burst=3):
        settings = city.api.ctx.settings
        assert settings.open_data.burst == 3
        for _ in range(3):
            assert city.get(f"{STA}/Things").status_code == 200
        refused = city.get(f"{STA}/Things")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "too many requests" in refused.json()["message"]
        assert refused.headers[POLICY_HEADER]
        assert city.get("/open/v1/catalog.json").status_code == 429  # one bucket per address
        city.api.clock.advance(1)
        assert city.get(f"{STA}/Things").status_code == 200
        assert city.get(f"{STA}/Things").status_code == 429
        # The API's own routes are not limited by it.
        assert city.api.client.get("/api/v1/health").status_code == 200


def test_rate_limit_reads_the_client_behind_a_trusted_proxy(city: OpenCity) -> None:
    """Behind HUB_API__TRUSTED_PROXIES the bucket is the forwarded client's, not the proxy's;
    an untrusted peer's X-Forwarded-For is ignored (it cannot pick a fresh bucket)."""
    service = city.api.opendata
    service.limiter = RateLimiter(rate_per_s=1, burst=1)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = OpenDataMiddleware(
        app, service=service, trusted_proxies=[ip_network("10.0.0.0/8")]
    )

    def status(peer: str, forwarded: str) -> int:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/sta/v1.1/Things",
            "client": (peer, 4000),
            "headers": [(b"x-forwarded-for", forwarded.encode())],
        }
        asyncio.run(middleware(scope, receive, send))
        return int(sent[0]["status"])

    assert status("10.0.0.1", "203.0.113.7") == 200
    assert status("10.0.0.1", "203.0.113.7") == 429
    assert status("10.0.0.2", "203.0.113.8") == 200  # another client behind the proxy
    assert status("192.0.2.1", "203.0.113.9") == 200
    assert status("192.0.2.1", "203.0.113.10") == 429  # the header of an untrusted peer


def test_the_gate_bounds_concurrent_queries_and_their_time(city: OpenCity) -> None:
    """With every slot taken a query waits at most queue_wait_s, then 503 with Retry-After;
    a query that overruns query_timeout_s is a 503 too."""

    async def scenario() -> tuple[str, str]:
        gate = QueryGate(max_concurrent=1, queue_wait_s=0.05, timeout_s=0.05)
        release = asyncio.Event()

        async def slow() -> str:
            await release.wait()
            return "done"

        holder = asyncio.create_task(gate.run(slow))
        await asyncio.sleep(0)
        try:
            await gate.run(slow)
        except Exception as exc:
            busy = str(exc)
        try:
            await holder
        except Exception as exc:
            late = str(exc)
        release.set()
        return busy, late

    busy, late = asyncio.run(scenario())
    assert "busy" in busy
    assert "took longer" in late
    # A real request finding no free slot: 503 with Retry-After, for both APIs.
    city.api.opendata.gate = QueryGate(max_concurrent=0, queue_wait_s=0.01, timeout_s=1)
    for path in (f"{STA}/Datastreams('{GAUGE}')/Observations", "/open/v1/catalog.json"):
        response = city.get(path)
        assert response.status_code == 503, path
        assert response.headers["retry-after"] == "1"
        assert "busy" in response.json()["detail"]


def test_quoted_ids_and_encoded_paths(shared_city: OpenCity) -> None:
    """Ids are quoted as OData says ('' for a quote); percent-encoded paths work."""
    city = shared_city
    encoded = quote("/sta/v1.1/Things('fg-d01-1')")
    assert city.json(encoded)["@iot.id"] == "fg-d01-1"
    assert city.get("/sta/v1.1/Things('it''s')").status_code == 404


def test_a_new_device_appears_within_a_minute_and_a_moved_one_within_ten(city: OpenCity) -> None:
    """The entity index is checked a minute after it was built: a device added by then is in
    the next answers (the index is rebuilt in the background meanwhile); a device that only
    moved is seen once the index is ten minutes old."""
    from tests.services import wait_for

    def things() -> dict[str, object]:
        found = city.json(f"{STA}/Things?$top=1000&$expand=Locations")["value"]
        return {t["@iot.id"]: t["Locations"] for t in found}

    assert "fg-d01-9" not in things()
    city.api.registry.add("fg-d01-9", "d01", "flood_gauge", latitude=51.5, longitude=7.5)
    assert "fg-d01-9" not in things()  # within the minute: the snapshot holds
    city.api.clock.advance(61)
    wait_for(lambda: "fg-d01-9" in things(), timeout=10, what="the new device")
    city.api.registry.add("fg-d01-9", "d01", "flood_gauge", latitude=51.6, longitude=7.5)
    city.api.clock.advance(61)
    assert things()["fg-d01-9"][0]["location"]["coordinates"] == [7.5, 51.5]  # type: ignore[index]
    city.api.clock.advance(600)
    wait_for(
        lambda: things()["fg-d01-9"][0]["location"]["coordinates"] == [7.5, 51.6],  # type: ignore[index]
        timeout=10,
        what="the moved device",
    )


def test_open_data_off_serves_nothing_public(shared_city: OpenCity) -> None:
    """With HUB_OPEN_DATA__ENABLED=false (no open-data service) the public paths are 404,
    the operator routes say it is off (503), and the console offers no open-data page."""
    import dataclasses

    from fastapi.testclient import TestClient

    from hub.api.app import create_app

    api = shared_city.api
    with TestClient(create_app(dataclasses.replace(api.ctx, opendata=None))) as client:
        for path in (STA, f"{STA}/Things", "/open/v1/catalog.json"):
            assert client.get(path).status_code == 404, path
        off = client.get("/api/v1/open-data/releases", headers=api.auth("operator"))
        assert off.status_code == 503
        assert "HUB_OPEN_DATA__ENABLED" in off.json()["detail"]
        config = client.get("/api/v1/console/config", headers=api.auth("operator")).json()
        assert config["can"]["open_data"] is False
