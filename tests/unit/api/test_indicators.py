"""The indicators API (CONTRACT §8): definitions, values as JSON and CSV, scope, drill-down;
and the resolution reason on resolve."""

from __future__ import annotations

from hub.catalog import load_catalog
from hub.indicators.definitions import parse_definitions
from tests.unit.api.conftest import Api

SERIES = "/api/v1/indicators/data_completeness_pct?period=day&start=-1d"


def test_definitions_list_every_built_in(api: Api) -> None:
    """Each definition comes with its formula, unit, direction and source."""
    r = api.client.get("/api/v1/indicators", headers=api.auth("viewer"))
    assert r.status_code == 200
    by_id = {d["id"]: d for d in r.json()}
    d = by_id["data_completeness_pct"]
    assert d["unit"] == "%"
    assert d["direction"] == "higher_is_better"
    assert d["source"] == "telemetry"
    assert d["ratio"] is True
    assert "expected" in d["formula"]
    assert {"time_to_acknowledge_median_s", "ack_within_target_pct"} <= set(by_id)


def test_series_has_the_contract_shape_with_numerator_and_denominator(api: Api) -> None:
    """{"id", "unit", "points": [{period_start_ms, district, asset_type, value, numerator,
    denominator}]}; the value is 100 × numerator ÷ denominator."""
    r = api.client.get(SERIES, headers=api.auth("viewer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "unit", "points"}
    by_district = {p["district"]: p for p in body["points"]}
    d07 = by_district["d07"]
    assert set(d07) == {
        "period_start_ms",
        "district",
        "asset_type",
        "value",
        "numerator",
        "denominator",
    }
    assert d07["numerator"] == 45  # a quarter of its 60 readings missing
    assert d07["value"] == 100 * d07["numerator"] / d07["denominator"]
    assert by_district["d03"]["numerator"] == 60


def test_a_scoped_key_sees_only_its_districts(api: Api) -> None:
    """A d07 key gets d07's points only, even grouped for the city; naming d03 is 403."""
    r = api.client.get(SERIES, headers=api.auth("d07-operator"))
    assert {p["district"] for p in r.json()["points"]} == {"d07"}
    city = api.client.get(SERIES + "&by=city", headers=api.auth("d07-operator")).json()["points"]
    assert city[0]["numerator"] == 45
    denied = api.client.get(SERIES + "&district=d03", headers=api.auth("d07-operator"))
    assert denied.status_code == 403
    assert "scope" in denied.json()["detail"]


def test_csv_by_format_or_accept_header(api: Api) -> None:
    """format=csv and Accept: text/csv give the same rows as CSV."""
    a = api.client.get(SERIES + "&format=csv", headers=api.auth("viewer"))
    b = api.client.get(SERIES, headers={**api.auth("viewer"), "Accept": "text/csv"})
    assert a.headers["content-type"].startswith("text/csv")
    assert a.text == b.text
    lines = a.text.splitlines()
    assert lines[0] == "id,unit,period_start_ms,district,asset_type,value,numerator,denominator"
    assert len(lines) == 3
    assert ",d07,," in lines[2]


def test_drill_down_lists_the_worst_device_first(api: Api) -> None:
    """The devices of a query, worst first; an indicator without device values is 422."""
    r = api.client.get(
        "/api/v1/indicators/data_completeness_pct/devices?start=-1d", headers=api.auth("viewer")
    )
    assert [d["device_id"] for d in r.json()["devices"]] == ["fg-d07-1", "fg-d03-1"]
    r = api.client.get("/api/v1/indicators/reading_delay_p95_s/devices", headers=api.auth("viewer"))
    assert r.status_code == 422
    assert "per device" in r.json()["detail"]


def test_resolve_takes_a_reason(api: Api) -> None:
    """POST resolve with a reason keeps it; without one it is `other`; a wrong one is 422."""
    alert = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    r = api.client.post(
        f"/api/v1/alerts/{alert.id}/resolve",
        json={"reason": "false_alarm"},
        headers=api.auth("operator"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["resolution"] == "false_alarm"
    other = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    r = api.client.post(f"/api/v1/alerts/{other.id}/resolve", headers=api.auth("operator"))
    assert r.json()["resolution"] == "other"
    third = api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
    r = api.client.post(
        f"/api/v1/alerts/{third.id}/resolve", json={"reason": "bored"}, headers=api.auth("operator")
    )
    assert r.status_code == 422


METHANE = """\
indicators:
  - id: methane_hours_above_10
    title: Manhole-hours with methane over 10 % LEL
    unit: h
    description: d
    formula: f
    source: telemetry
    direction: lower_is_better
    measure: {kind: hours_above, asset_type: manhole, metric: methane_pct_lel, threshold: 10}
"""


def test_an_indicator_of_a_restricted_metric_is_refused_to_roles_that_may_not_read_it(
    api: Api,
) -> None:
    """Methane is restricted: a viewer gets 403 naming it, an operator the values."""
    found = parse_definitions(METHANE, "x.yaml", load_catalog())
    api.indicators.set_definitions([*api.indicators.loaded(), *found.definitions.values()])
    path = "/api/v1/indicators/methane_hours_above_10"
    denied = api.client.get(path, headers=api.auth("viewer"))
    assert denied.status_code == 403
    assert "manhole.methane_pct_lel" in denied.json()["detail"]
    assert api.client.get(path + "/devices", headers=api.auth("viewer")).status_code == 403
    assert api.client.get(path, headers=api.auth("operator")).status_code == 200
