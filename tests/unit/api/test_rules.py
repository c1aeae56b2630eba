"""Rules and dead-letters endpoints."""

from __future__ import annotations

from tests.unit.api.conftest import Api


def test_rules_crud_records_author(api: Api) -> None:
    """Rule authors create, read, replace and delete managed rules; changes name the author."""
    h = api.auth("rule_author")
    created = api.client.post("/api/v1/rules", json={"source_yaml": "id: high-water\n"}, headers=h)
    assert created.status_code == 201
    assert created.json()["id"] == "high-water"
    assert api.client.get("/api/v1/rules/high-water", headers=h).json()["managed"] is True
    body = {"source_yaml": "id: high-water\nvalue: 3\n"}
    assert api.client.put("/api/v1/rules/high-water", json=body, headers=h).status_code == 200
    assert api.client.delete("/api/v1/rules/high-water", headers=h).status_code == 204
    assert api.client.get("/api/v1/rules/high-water", headers=h).status_code == 404
    changes = api.client.get("/api/v1/rules/changes?limit=2", headers=h).json()
    assert [(c["action"], c["author"]) for c in changes] == [
        ("delete", "rule_author-key"),
        ("update", "rule_author-key"),
    ]


def test_rules_list_has_firing_counts(api: Api) -> None:
    """The rules list carries each rule's current firing count."""
    rules = api.client.get("/api/v1/rules", headers=api.auth("rule_author")).json()
    assert {r["id"]: r["firing"] for r in rules} == {"flood-critical": 1, "managed-rule": 0}


def test_invalid_rule_is_422_with_file_line_problems(api: Api) -> None:
    """An invalid rule is 422 listing `file:line: message` problems like `hub rules check`."""
    response = api.client.post(
        "/api/v1/rules", json={"source_yaml": "id: x\ninvalid: 1\n"}, headers=api.auth("admin")
    )
    assert response.status_code == 422
    assert response.json()["detail"] == ["rules/managed/new.yaml:3: unknown field 'invalid'"]


def test_rule_conflicts_and_missing(api: Api) -> None:
    """Duplicate ids and edits of file rules are 409; unknown rules 404; bad bodies 422."""
    h = api.auth("rule_author")
    dup = {"source_yaml": "id: managed-rule\n"}
    assert api.client.post("/api/v1/rules", json=dup, headers=h).status_code == 409
    body = {"source_yaml": "id: flood-critical\n"}
    assert api.client.put("/api/v1/rules/flood-critical", json=body, headers=h).status_code == 409
    assert api.client.delete("/api/v1/rules/flood-critical", headers=h).status_code == 409
    assert api.client.delete("/api/v1/rules/ghost", headers=h).status_code == 404
    assert api.client.put("/api/v1/rules/ghost", json=body, headers=h).status_code == 404
    assert api.client.post("/api/v1/rules", json={"yaml": "x"}, headers=h).status_code == 422
    assert api.client.post("/api/v1/rules", content=b"not json", headers=h).status_code == 422


def test_scoped_keys_cannot_change_rules(api: Api) -> None:
    """Rules are city-wide: a district-scoped admin may read them but not change them."""
    h = api.auth("d07")
    assert api.client.get("/api/v1/rules", headers=h).status_code == 200
    body = {"source_yaml": "id: mine\n"}
    assert api.client.post("/api/v1/rules", json=body, headers=h).status_code == 403
    assert api.client.delete("/api/v1/rules/managed-rule", headers=h).status_code == 403


def test_rule_problems(api: Api) -> None:
    """Current rule load problems are listed with file and line."""
    problems = api.client.get("/api/v1/rules/problems", headers=api.auth("rule_author")).json()
    assert problems == [
        {"file": "rules/broken.yaml", "line": 7, "message": "op must be one of >, <"}
    ]


def test_dead_letters_filters_and_scope(api: Api) -> None:
    """Operators read rejections by reason/device; a d07 key sees d07 ones and their counts only."""
    h = api.auth("operator")
    everything = api.client.get("/api/v1/dead-letters", headers=h).json()
    assert everything["counts_by_reason"] == {"invalid_json": 1, "bad_metric": 1, "bad_topic": 1}
    assert [d["reason"] for d in everything["items"]] == ["bad_topic", "bad_metric", "invalid_json"]
    by_reason = api.client.get("/api/v1/dead-letters?reason=invalid_json", headers=h).json()
    assert [d["device_id"] for d in by_reason["items"]] == ["fg-d03-1"]
    by_device = api.client.get("/api/v1/dead-letters?device_id=mh-d07-1", headers=h).json()
    assert [d["reason"] for d in by_device["items"]] == ["bad_metric"]
    scoped = api.client.get("/api/v1/dead-letters", headers=api.auth("d07-operator")).json()
    assert [d["district"] for d in scoped["items"]] == ["d07"]
    assert scoped["counts_by_reason"] == {"bad_metric": 1}
    bad = api.client.get("/api/v1/dead-letters?reason=Bad Reason", headers=h)
    assert bad.status_code == 422
