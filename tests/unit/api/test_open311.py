"""Open311 GeoReport v2 at /open311/v2, as 311 apps and standard clients meet it."""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from georeport import GeoReport
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.api.audit import entries
from hub.ports import ReportLink
from hub.reports import SqliteReportStore
from hub.settings import ReportsSettings, Settings
from tests.services import free_port, wait_for
from tests.unit.api.conftest import NOW_MS, REPORTER, Api, make_api

BASE = "/open311/v2"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
#: The specification's element names, per resource (GeoReport v2).
SERVICE_ELEMENTS = [
    "service_code",
    "service_name",
    "description",
    "metadata",
    "type",
    "keywords",
    "group",
]
REQUEST_ELEMENTS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]
ATTRIBUTE_ELEMENTS = [
    "variable",
    "code",
    "datatype",
    "required",
    "datatype_description",
    "order",
    "description",
]


def _post(api: Api, fmt: str = "json", **fields: str) -> Any:
    return api.client.post(f"{BASE}/requests.{fmt}", data=fields, headers=FORM)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    """The hub's app on a real uvicorn (standard clients speak plain HTTP to it)."""
    for api in make_api(tmp_path):
        config = uvicorn.Config(
            api.client.app,
            host="127.0.0.1",
            port=free_port(),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        wait_for(lambda s=server: s.started, what="uvicorn to start")
        yield api, f"http://127.0.0.1:{config.port}{BASE}"
        server.should_exit = True
        thread.join(10)


def test_georeport_client_reads_services_definitions_and_requests(
    served: tuple[Api, str],
) -> None:
    """The `georeport` PyPI client lists the services, reads a definition and the requests,
    in JSON and in XML, with no key."""
    _, url = served
    for fmt in ("json", "xml"):
        client = GeoReport(url, output_format=fmt)
        services = client.get_service_list()
        codes = [s["service_code"] for s in services]
        assert codes[:2] == ["flooded_street", "gas_smell"]
        definition = client.get_service_definition("gas_smell")
        assert definition["service_code"] == "gas_smell"
        requests_ = client.get_service_requests(service_code="flooded_street")
        listed = requests_ if isinstance(requests_, list) else [requests_]
        assert sorted(str(r["service_request_id"]) for r in listed) == ["1", "2"]
        one = client.get_service_request("1")
        assert str(one["service_request_id"]) == "1"
        assert one["status"] == "open"


def test_a_plain_http_form_post_creates_a_request(served: tuple[Api, str]) -> None:
    """POST requests.json with the specification's url-encoding (attribute[code]) from
    urllib answers the new request's id; the request is then public, without contact."""
    api, url = served
    body = urllib.parse.urlencode(
        {
            "service_code": "gas_smell",
            "lat": "48.85661",
            "long": "2.35222",
            "description": "Rotten eggs near the school",
            "email": "zoe@example.org",
            "first_name": "Zoe",
            "last_name": "Zed",
            "phone": "+33 6 11 22 33 44",
            "media_url": "https://photos.example.org/p/1.jpg",
            "attribute[strength]": "strong",
        }
    ).encode()
    request = urllib.request.Request(f"{url}/requests.json", data=body, headers=FORM)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        created = __import__("json").loads(response.read())
    assert created == [
        {
            "service_request_id": 3,
            "service_notice": (
                "The gas and sewer team is alerted when several people report a smell nearby."
            ),
            "account_id": None,
        }
    ]
    with urllib.request.urlopen(f"{url}/requests/3.json", timeout=10) as response:
        text = response.read().decode()
    assert "Rotten eggs near the school" in text
    assert '"media_url":"https://photos.example.org/p/1.jpg"' in text
    assert not any(v in text for v in ("zoe@example.org", "Zoe", "Zed", "+33 6 11 22 33 44"))
    contact = api.reports.contact(3)
    assert contact is not None
    assert contact.email == "zoe@example.org"


def test_xml_answers_carry_the_specification_element_names(api: Api) -> None:
    """Services, a definition, requests, a creation and errors parse as XML with the
    specification's elements, in its order, under a UTF-8 declaration."""
    services = api.client.get(f"{BASE}/services.xml")
    assert services.headers["content-type"] == "text/xml; charset=utf-8"
    assert services.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    root = ET.fromstring(services.content)
    assert root.tag == "services"
    assert [c.tag for c in root[0]] == SERVICE_ELEMENTS
    definition = ET.fromstring(api.client.get(f"{BASE}/services/flooded_street.xml").content)
    assert definition.tag == "service_definition"
    assert [c.tag for c in definition] == ["service_code", "attributes"]
    attribute = definition.find("attributes/attribute")
    assert attribute is not None
    assert [c.tag for c in attribute] == [*ATTRIBUTE_ELEMENTS, "values"]
    assert [v.findtext("key") for v in attribute.findall("values/value")] == [
        "ankle",
        "knee",
        "deeper",
    ]
    requests_ = ET.fromstring(api.client.get(f"{BASE}/requests.xml").content)
    assert requests_.tag == "service_requests"
    assert [c.tag for c in requests_.find("request")] == REQUEST_ELEMENTS  # type: ignore[union-attr]
    one = ET.fromstring(api.client.get(f"{BASE}/requests/1.xml").content)
    assert one.findtext("request/status") == "open"
    assert one.findtext("request/lat") == "48.8566"
    created = ET.fromstring(
        _post(api, "xml", service_code="streetlight_out", address_string="Rue X 12").content
    )
    assert [c.tag for c in created.find("request")] == [  # type: ignore[union-attr]
        "service_request_id",
        "service_notice",
        "account_id",
    ]
    error = api.client.get(f"{BASE}/services/pothole.xml")
    assert error.status_code == 404
    doc = ET.fromstring(error.content)
    assert doc.tag == "errors"
    assert [c.tag for c in doc.find("error")] == ["code", "description"]  # type: ignore[union-attr]
    assert doc.findtext("error/code") == "404"
    discovery = ET.fromstring(api.client.get(f"{BASE}/discovery.xml").content)
    assert discovery.findtext("endpoints/endpoint/specification") == (
        "http://wiki.open311.org/GeoReport_v2"
    )
    assert [f.text for f in discovery.findall("endpoints/endpoint/formats/format")] == [
        "text/xml",
        "application/json",
    ]


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"service_code": "pothole", "lat": "1", "long": "1"}, 404, "service_code 'pothole'"),
        ({"service_code": "flooded_street"}, 400, "a location is needed"),
        ({"service_code": "flooded_street", "lat": "48.8"}, 400, "give both"),
        ({"service_code": "flooded_street", "lat": "91", "long": "2"}, 400, "lat: must be"),
        ({"service_code": "flooded_street", "lat": "nan", "long": "2"}, 400, "lat: must be"),
        ({"lat": "48.8", "long": "2.3"}, 400, "service_code: required"),
        (
            {"service_code": "flooded_street", "lat": "48.8", "long": "2.3", "colour": "red"},
            400,
            "not a field",
        ),
        (
            {
                "service_code": "flooded_street",
                "address_string": "x",
                "media_url": "file:///etc/passwd",
            },
            400,
            "media_url: must be an http",
        ),
        (
            {
                "service_code": "flooded_street",
                "address_string": "x",
                "media_url": "https://u:p@photos.example.org/1.jpg",
            },
            400,
            "user name or password",
        ),
        (
            {"service_code": "flooded_street", "address_string": "x", "email": "not-an-email"},
            400,
            "email: not an e-mail",
        ),
        (
            {"service_code": "flooded_street", "address_string": "x", "description": "d" * 4001},
            400,
            "description: at most 4000",
        ),
        (
            {"service_code": "flooded_street", "address_string": "a\x00b"},
            400,
            "control characters",
        ),
        (
            {"service_code": "gas_smell", "address_string": "x", "attribute[strength]": "mild"},
            400,
            "'mild' is not one of",
        ),
    ],
)
def test_bad_posts_answer_the_specification_error_list(
    api: Api, fields: dict[str, str], status: int, says: str
) -> None:
    """Each bad report is refused with its HTTP status and [{code, description}] saying why."""
    response = _post(api, **fields)
    assert response.status_code == status, response.text
    [error] = response.json()
    assert error["code"] == status
    assert says in error["description"]


def test_uploads_other_bodies_and_unknown_arguments_are_refused(api: Api) -> None:
    """multipart (an upload), JSON bodies, unknown filters, unknown paths and methods:
    each answered in the specification's error format, never {"detail": …}."""
    upload = api.client.post(
        f"{BASE}/requests.json",
        data={"service_code": "flooded_street"},
        files={"media": ("x.jpg", b"\xff\xd8", "image/jpeg")},
    )
    assert upload.status_code == 400
    assert "uploads are not accepted" in upload.json()[0]["description"]
    as_json = api.client.post(f"{BASE}/requests.json", json={"service_code": "flooded_street"})
    assert as_json.status_code == 400
    typo = api.client.get(f"{BASE}/requests.json?statuss=open")
    assert typo.status_code == 400
    assert "'statuss'" in typo.json()[0]["description"]
    assert api.client.get(f"{BASE}/requests.json?status=pending").status_code == 400
    long_range = api.client.get(
        f"{BASE}/requests.json?start_date=2025-01-01T00:00:00Z&end_date=2025-06-01T00:00:00Z"
    )
    assert long_range.status_code == 400
    assert "90 days" in long_range.json()[0]["description"]
    assert api.client.get(f"{BASE}/requests.json?start_date=yesterday").status_code == 400
    nowhere = api.client.get(f"{BASE}/potholes.json")
    assert (nowhere.status_code, nowhere.json()[0]["code"]) == (404, 404)
    assert api.client.get(f"{BASE}/requests.csv").status_code == 404
    assert api.client.get(f"{BASE}/requests/99.json").status_code == 404
    assert api.client.get(f"{BASE}/tokens/nope.json").status_code == 404
    wrong = api.client.delete(f"{BASE}/requests.json")
    assert wrong.status_code == 405
    assert "GET, POST" in wrong.headers["allow"]
    assert wrong.json()[0]["code"] == 405


def test_requests_filters_follow_the_specification(api: Api) -> None:
    """service_request_id overrides the rest; status open/closed; dates bound the range."""
    created = _post(api, service_code="streetlight_out", address_string="Rue X 12").json()
    new_id = created[0]["service_request_id"]

    def ids(query: str) -> list[int]:
        answer = api.client.get(f"{BASE}/requests.json?{query}").json()
        return sorted(r["service_request_id"] for r in answer)

    assert ids("") == [1, 2, new_id]
    assert ids("service_code=streetlight_out,gas_smell") == [new_id]
    assert ids(f"service_request_id=1,{new_id}&service_code=gas_smell") == [1, new_id]
    api.client.post(
        "/api/v1/reports/1/status",
        json={"status": "closed", "note": "Pumped dry"},
        headers=api.auth("operator"),
    )
    assert ids("status=closed") == [1]
    assert ids("status=open") == [2, new_id]
    closed = api.client.get(f"{BASE}/requests/1.json").json()[0]
    assert (closed["status"], closed["status_notes"]) == ("closed", "Pumped dry")
    assert ids("end_date=2025-11-24T00:00:00Z") == []
    assert ids("start_date=2025-11-24T00:00:00Z") == [1, 2, new_id]


def test_a_batch_service_answers_with_a_token_that_resolves(tmp_path: Path) -> None:
    """A service of type batch answers a token, and tokens/{token} gives the request id."""
    services = tmp_path / "services.yaml"
    services.write_text(
        "services:\n  - service_code: graffiti\n    service_name: Graffiti\n    type: batch\n",
        encoding="utf-8",
    )
    settings = Settings(data_dir=tmp_path, reports=ReportsSettings(services_path=str(services)))
    for api in make_api(tmp_path, settings):
        api.reports._services.clear()
        from hub.reports import load_services

        for s in load_services(services):
            api.reports._services[s.service_code] = s
        created = _post(api, service_code="graffiti", address_string="Bridge 4").json()[0]
        assert set(created) == {"token", "service_notice", "account_id"}
        resolved = api.client.get(f"{BASE}/tokens/{created['token']}.json").json()
        assert resolved == [{"service_request_id": 3, "token": created["token"]}]


def test_rate_limit_answers_with_the_specification_error(tmp_path: Path) -> None:
    """Past the burst of posts allowed per address, 429 with [{code, description}] and
    Retry-After; reading is limited apart, and another method is not affected."""
    settings = Settings(
        data_dir=tmp_path, reports=ReportsSettings(post_per_minute=2, read_per_minute=3)
    )
    for api in make_api(tmp_path, settings):
        for _ in range(2):
            assert _post(api, service_code="water_leak", address_string="x").status_code == 200
        refused = _post(api, service_code="water_leak", address_string="x")
        assert refused.status_code == 429
        assert refused.json() == [
            {
                "code": 429,
                "description": "too many reports posted from this address; try again in 30 s",
            }
        ]
        assert refused.headers["retry-after"] == "30"
        for _ in range(3):
            assert api.client.get(f"{BASE}/services.json").status_code == 200
        xml = api.client.get(f"{BASE}/services.xml")
        assert xml.status_code == 429
        assert ET.fromstring(xml.content).findtext("error/code") == "429"
        api.clock.advance(30)
        assert _post(api, service_code="water_leak", address_string="x").status_code == 200


def test_jurisdiction_id_is_accepted_and_checked_when_configured(tmp_path: Path) -> None:
    """Clients send jurisdiction_id; with HUB_REPORTS__JURISDICTION_ID set, another is 404."""
    settings = Settings(data_dir=tmp_path, reports=ReportsSettings(jurisdiction_id="city.example"))
    for api in make_api(tmp_path, settings):
        ok = api.client.get(f"{BASE}/services.json?jurisdiction_id=city.example&api_key=x")
        assert ok.status_code == 200
        other = api.client.get(f"{BASE}/services.json?jurisdiction_id=elsewhere.example")
        assert other.status_code == 404
        assert "jurisdiction_id" in other.json()[0]["description"]


def test_contact_is_read_only_through_its_operator_route_and_audited(api: Api) -> None:
    """Report 1 has a reporter: the report shows has_contact only; /contact (operator)
    gives it, and the read is in the audit log; a viewer is refused."""
    report = api.client.get("/api/v1/reports/1", headers=api.auth("viewer"))
    assert report.json()["has_contact"] is True
    assert not any(v in report.text for v in REPORTER.values())
    assert (
        api.client.get("/api/v1/reports/1/contact", headers=api.auth("viewer")).status_code == 403
    )
    contact = api.client.get("/api/v1/reports/1/contact", headers=api.auth("operator"))
    assert contact.json() == REPORTER
    audited = [e for e in entries(api.ctx.conn, limit=10) if e.path == "/api/v1/reports/1/contact"]
    assert [(e.key_name, e.status, e.rows) for e in audited] == [
        ("operator-key", 200, 1),
        ("viewer-key", 403, None),
    ]


def test_alert_detail_lists_the_reports_linked_to_it(api: Api) -> None:
    """GET /alerts/{id} carries `reports`: the citizen reports linked to it."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    link = ReportLink(alert.id, None, alert.rule_id, "120 m from fg-d03-1", 120.0, NOW_MS)
    SqliteReportStore(api.ctx.conn).add_links(2, [link])
    detail = api.client.get(f"/api/v1/alerts/{alert.id}", headers=api.auth("viewer")).json()
    assert [r["id"] for r in detail["reports"]] == [2]
    assert detail["reports"][0]["links"][0]["reason"] == "120 m from fg-d03-1"
    listed = api.client.get(
        f"/api/v1/reports?alert_id={alert.id}", headers=api.auth("viewer")
    ).json()
    assert [r["id"] for r in listed] == [2]


# --------------------------------------------------------------------------- privacy property

_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=6, max_size=12)
_REPORTERS = st.fixed_dictionaries(
    {
        "email": st.builds(lambda a, b: f"zq{a}@{b}.example", _NAME, _NAME),
        "first_name": st.builds(lambda a: f"Zq{a}", _NAME),
        "last_name": st.builds(lambda a: f"Qz{a}", _NAME),
        "phone": st.builds(lambda d: f"+99 {d}", st.from_regex(r"[0-9]{9}", fullmatch=True)),
        "device_id": st.builds(lambda a: f"dev-{a}", _NAME),
        "account_id": st.builds(lambda a: f"acct-{a}", _NAME),
    }
)
_REPORT = st.fixed_dictionaries(
    {
        "service_code": st.sampled_from(["flooded_street", "water_leak", "bridge_damage"]),
        "lat": st.floats(48.80, 48.90).map(lambda v: f"{v:.6f}"),
        "long": st.floats(2.30, 2.40).map(lambda v: f"{v:.6f}"),
        "description": st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80),
    }
)


@pytest.fixture
def unlimited(tmp_path: Path) -> Iterator[Api]:
    """The API without practical rate limits (the property test posts many reports)."""
    settings = Settings(
        data_dir=tmp_path,
        reports=ReportsSettings(post_per_minute=100_000, read_per_minute=1_000_000),
    )
    yield from make_api(tmp_path, settings)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reporter=_REPORTERS, report=_REPORT, fmt=st.sampled_from(["json", "xml"]))
def test_no_public_response_contains_contact_data(
    unlimited: Api, reporter: dict[str, str], report: dict[str, str], fmt: str
) -> None:
    """Whatever a reporter gives, no public route (every Open311 resource, both formats)
    answers their e-mail, name, phone, device or account id."""
    api = unlimited
    created = _post(api, fmt="json", **report, **reporter)
    assert created.status_code == 200, created.text
    request_id = created.json()[0]["service_request_id"]
    answers = [
        api.client.get(f"{BASE}/discovery.{fmt}"),
        api.client.get(f"{BASE}/services.{fmt}"),
        api.client.get(f"{BASE}/services/{report['service_code']}.{fmt}"),
        api.client.get(f"{BASE}/requests.{fmt}"),
        api.client.get(f"{BASE}/requests.{fmt}?service_request_id={request_id}"),
        api.client.get(f"{BASE}/requests/{request_id}.{fmt}"),
        created,
        _post(api, fmt=fmt, **report, **reporter),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        for value in reporter.values():
            assert value not in answer.text, (answer.url, value)
