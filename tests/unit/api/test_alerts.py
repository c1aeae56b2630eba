"""Alerts, districts and silences endpoints: lifecycle, scope, explanation, CAP, board."""

from __future__ import annotations

import pytest

from hub.alerts.lifecycle import match_labels
from hub.ports import ALERT_IDENTITY_LABELS
from tests.unit.api.conftest import NOW_MS, Api


def test_list_filters_and_scope(api: Api) -> None:
    """Filters select alerts; a d07 key never sees d03 alerts, even asking for them."""
    a3 = api.alerts.fire("d03", "flood_gauge", "fg-d03-1", severity="critical")
    a7 = api.alerts.fire("d07", "manhole", "mh-d07-1", severity="warning", rule_id="gas")
    get = api.client.get
    ids = lambda r: [a["id"] for a in r.json()]  # noqa: E731
    assert ids(get("/api/v1/alerts", headers=api.auth("viewer"))) == [a7.id, a3.id]
    assert ids(get("/api/v1/alerts?severity=critical", headers=api.auth("viewer"))) == [a3.id]
    assert ids(get("/api/v1/alerts?rule_id=gas", headers=api.auth("viewer"))) == [a7.id]
    assert ids(get("/api/v1/alerts", headers=api.auth("d07"))) == [a7.id]
    assert ids(get("/api/v1/alerts?district=d03", headers=api.auth("d07"))) == []
    assert get(f"/api/v1/alerts/{a3.id}", headers=api.auth("d07")).status_code == 403
    assert get(f"/api/v1/alerts/{a3.id}/cap", headers=api.auth("d07")).status_code == 403
    feed = get("/api/v1/alerts/cap.atom", headers=api.auth("d07"))
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert a7.id in feed.text
    assert a3.id not in feed.text


@pytest.mark.parametrize("query", ["state=open", "severity=huge", "district=D3", "limit=100000"])
def test_list_bad_parameters_are_422(api: Api, query: str) -> None:
    """Unknown states and severities, bad districts and oversized pages are 422."""
    assert api.client.get(f"/api/v1/alerts?{query}", headers=api.auth("viewer")).status_code == 422


def test_detail_has_explanation_and_timeline(api: Api) -> None:
    """Alert detail carries the explanation and the timeline with actors."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    api.client.post(
        f"/api/v1/alerts/{alert.id}/ack", json={"comment": "crew out"}, headers=api.auth("operator")
    )
    body = api.client.get(f"/api/v1/alerts/{alert.id}", headers=api.auth("viewer")).json()
    assert body["explanation"]["threshold"] == 3.0
    assert [(t["status"], t["actor"]) for t in body["timeline"]] == [
        ("firing", "rule"),
        ("acknowledged", "operator-key"),
    ]
    assert body["timeline"][1]["comment"] == "crew out"


def test_ack_resolve_comment_lifecycle(api: Api) -> None:
    """Ack, comment, resolve change state; acting on a resolved alert is 409; unknown is 404."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    post = api.client.post
    h = api.auth("operator")
    assert post(f"/api/v1/alerts/{alert.id}/ack", headers=h).json()["status"] == "acknowledged"
    assert post(f"/api/v1/alerts/{alert.id}/ack", headers=h).status_code == 409
    assert (
        post(f"/api/v1/alerts/{alert.id}/comment", json={"comment": "x"}, headers=h).status_code
        == 200
    )
    assert post(f"/api/v1/alerts/{alert.id}/comment", json={}, headers=h).status_code == 422
    assert post(f"/api/v1/alerts/{alert.id}/resolve", headers=h).json()["status"] == "resolved"
    assert post(f"/api/v1/alerts/{alert.id}/resolve", headers=h).status_code == 409
    assert post("/api/v1/alerts/nope/ack", headers=h).status_code == 404
    assert post("/api/v1/alerts/nope/comment", json={"comment": "x"}, headers=h).status_code == 404
    assert api.client.get("/api/v1/alerts/nope/cap", headers=h).status_code == 404
    too_long = {"comment": "x" * 5000}
    assert post(f"/api/v1/alerts/{alert.id}/comment", json=too_long, headers=h).status_code == 422


def test_scoped_operator_cannot_ack_outside_scope(api: Api) -> None:
    """A d07 operator acks d07 alerts but gets 403 on a d03 alert, which stays firing."""
    a3 = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    a7 = api.alerts.fire("d07", "flood_gauge", "fg-d07-1")
    h = api.auth("d07-operator")
    assert api.client.post(f"/api/v1/alerts/{a3.id}/ack", headers=h).status_code == 403
    assert api.alerts.alerts[a3.id].status == "firing"
    assert api.client.post(f"/api/v1/alerts/{a7.id}/ack", headers=h).status_code == 200


def test_cap_and_figures(api: Api) -> None:
    """CAP is served as application/xml; figures answer in scope."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    cap = api.client.get(f"/api/v1/alerts/{alert.id}/cap", headers=api.auth("viewer"))
    assert cap.headers["content-type"].startswith("application/xml")
    assert alert.id in cap.text
    figures = api.client.get("/api/v1/alerts/figures", headers=api.auth("d07")).json()
    assert figures["overall"]["count"] == 0


def test_district_board_turns_red_with_an_alert(api: Api) -> None:
    """Status counts devices per asset type and takes the worst active severity as condition."""
    h = api.auth("viewer")
    before = api.client.get("/api/v1/districts/d07/status", headers=h).json()
    assert before["worst"] == "ok"
    assert (before["devices"], before["online"], before["offline"], before["stale"]) == (3, 2, 1, 1)
    api.alerts.fire("d07", "manhole", "mh-d07-1", severity="warning")
    api.alerts.fire("d07", "flood_gauge", "fg-d07-1", severity="emergency")
    after = api.client.get("/api/v1/districts/d07/status", headers=h).json()
    assert after["worst"] == "emergency"
    assert after["active_alerts"] == {"warning": 1, "emergency": 1}
    cells = {c["asset_type"]: c["worst"] for c in after["asset_types"]}
    assert cells == {"air_quality": "ok", "flood_gauge": "emergency", "manhole": "warning"}
    board = api.client.get("/api/v1/districts", headers=h).json()
    assert [(d["district"], d["worst"]) for d in board] == [("d03", "ok"), ("d07", "emergency")]


def test_resolved_alerts_leave_the_board(api: Api) -> None:
    """A resolved alert no longer colours its district."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    api.client.post(f"/api/v1/alerts/{alert.id}/resolve", headers=api.auth("operator"))
    status = api.client.get("/api/v1/districts/d03/status", headers=api.auth("viewer")).json()
    assert status["worst"] == "ok"


def test_district_scope_and_unknown(api: Api) -> None:
    """Districts outside scope are 403 and missing from the board; unknown ones 404; bad 422."""
    h = api.auth("d07")
    assert api.client.get("/api/v1/districts/d03/status", headers=h).status_code == 403
    assert [d["district"] for d in api.client.get("/api/v1/districts", headers=h).json()] == ["d07"]
    v = api.auth("viewer")
    assert api.client.get("/api/v1/districts/d99/status", headers=v).status_code == 404
    assert api.client.get("/api/v1/districts/D!/status", headers=v).status_code == 422
    manhole = api.client.get("/api/v1/districts/d07/status", headers=api.auth("manhole")).json()
    assert [c["asset_type"] for c in manhole["asset_types"]] == ["manhole"]


def test_silences_create_list_expire(api: Api) -> None:
    """Operators create silences (active now), list them, and expire them (404 unknown)."""
    h = api.auth("operator")
    body = {"matchers": {"district": "d03"}, "duration_s": 3600, "comment": "pump works"}
    created = api.client.post("/api/v1/silences", json=body, headers=h)
    assert created.status_code == 201
    silence = created.json()
    assert silence["active"] is True
    assert silence["ends_ms"] == NOW_MS + 3_600_000
    assert silence["created_by"] == "operator-key"
    listed = api.client.get("/api/v1/silences", headers=api.auth("viewer")).json()
    assert [s["id"] for s in listed] == [silence["id"]]
    expired = api.client.post(f"/api/v1/silences/{silence['id']}/expire", headers=h).json()
    assert expired["active"] is False
    assert api.client.get("/api/v1/silences", headers=h).json() == []
    assert len(api.client.get("/api/v1/silences?include_expired=true", headers=h).json()) == 1
    assert api.client.post("/api/v1/silences/nope/expire", headers=h).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"matchers": {}, "duration_s": 60, "comment": "x"},
        {"matchers": {"district": "d03"}, "comment": "x"},
        {"matchers": {"district": "d03"}, "duration_s": 60, "ends_ms": NOW_MS + 1, "comment": "x"},
        {"matchers": {"district": "d03"}, "ends_ms": NOW_MS - 1, "comment": "x"},
        {"matchers": {"district": "d03"}, "duration_s": 10**9, "comment": "x"},
        {"matchers": {"Bad Key": "x"}, "duration_s": 60, "comment": "x"},
        {"matchers": {"district": "d03"}, "duration_s": 60, "comment": ""},
    ],
)
def test_silence_bad_bodies_are_422(api: Api, body: dict[str, object]) -> None:
    """Silences need matchers, exactly one end, a future end, a bounded length and a comment."""
    response = api.client.post("/api/v1/silences", json=body, headers=api.auth("operator"))
    assert response.status_code == 422, response.text


def test_scoped_silences(api: Api) -> None:
    """A d07 operator must pin silences to d07 and sees only d07 silences."""
    h = api.auth("d07-operator")
    city = {"matchers": {"rule_id": "x"}, "duration_s": 60, "comment": "x"}
    assert api.client.post("/api/v1/silences", json=city, headers=h).status_code == 403
    d03 = {"matchers": {"district": "d03"}, "duration_s": 60, "comment": "x"}
    assert api.client.post("/api/v1/silences", json=d03, headers=h).status_code == 403
    other = api.client.post("/api/v1/silences", json=d03, headers=api.auth("operator")).json()
    d07 = {"matchers": {"district": "d07"}, "duration_s": 60, "comment": "x"}
    assert api.client.post("/api/v1/silences", json=d07, headers=h).status_code == 201
    assert [s["matchers"] for s in api.client.get("/api/v1/silences", headers=h).json()] == [
        {"district": "d07"}
    ]
    assert api.client.post(f"/api/v1/silences/{other['id']}/expire", headers=h).status_code == 403


def test_silence_on_a_label_no_alert_carries_is_422(api: Api) -> None:
    """A matcher key that is neither an alert's identity nor a label of a loaded rule is a
    422 naming it (such a silence would never match); a rule's own label is accepted."""
    h = api.auth("operator")
    typo = {"matchers": {"distrct": "d03"}, "duration_s": 60, "comment": "x"}
    response = api.client.post("/api/v1/silences", json=typo, headers=h)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "matchers", "distrct"]
    assert "district" in detail["msg"]
    assert api.alerts.silences == {}
    api.rules.add("crew-rule", labels={"crew": "north"})
    crew = {"matchers": {"crew": "north", "severity": "critical"}, "duration_s": 60, "comment": "x"}
    assert api.client.post("/api/v1/silences", json=crew, headers=h).status_code == 201


def test_identity_labels_are_those_the_alert_manager_matches_on() -> None:
    """The identity labels the API accepts in silences are exactly those every alert
    carries for matching (hub.alerts.lifecycle.match_labels), besides its rule's labels."""
    row = {
        "labels": '{"team": "t"}',
        "district": "d01",
        "asset_type": "manhole",
        "severity": 3,
        "rule_id": "r",
        "source": "mh-1",
    }
    assert set(match_labels(row)) - {"team"} == set(ALERT_IDENTITY_LABELS)
