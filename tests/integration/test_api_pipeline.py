"""The API over the real stages: a real `hub run` with Mosquitto, alerts, rules and registry."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, env_for
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.integration

# One rule that fires on the first reading over 3.0 m, so the test needs no real minutes.
RULES = """
rules:
  - id: api-test-flood
    description: River level above 3 m (API integration test)
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    clear: 2.8
    for: 0
    severity: critical
"""


@pytest.fixture
def hub(mosquitto: Mosquitto, names: Names, tmp_path: Path) -> Iterator[HubProcess]:
    """A running hub on the embedded store with the one rule above."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "flood.yaml").write_text(RULES, encoding="utf-8")
    env = env_for(
        names.topic_prefix(),
        mosquitto.url,
        HUB_STORE__BACKEND="embedded",
        HUB_RULES__PATHS=str(rules),
    )
    process = HubProcess(tmp_path / "hub", env)
    process.start()
    yield process
    process.stop()


class Stream:
    """Reads GET /api/v1/stream in a thread and keeps the decoded events."""

    def __init__(self, url: str, key: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, key), daemon=True)
        self._thread.start()

    def _run(self, url: str, key: str) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        try:
            with httpx.stream("GET", f"{url}/api/v1/stream", headers=headers, timeout=60) as resp:
                kind = ""
                for line in resp.iter_lines():
                    if line == ": connected":
                        self.connected.set()
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((kind, json.loads(line[6:])))
                    if self._stop.is_set():
                        return
        except httpx.HTTPError:
            return  # the hub stopped under us at the end of the test

    def close(self) -> None:
        self._stop.set()


def _key(hub: HubProcess, role: str, *scope: str) -> str:
    args = ["keys", "create", "--role", role, "--name", f"{role}-{len(scope)}"]
    for item in scope:
        args += ["--scope", item]
    return hub.cli(*args).stdout.split()[-1]


def _get(hub: HubProcess, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{hub.url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_reading_over_a_rule_turns_the_district_red_and_an_ack_shows_everywhere(
    hub: HubProcess, mosquitto: Mosquitto, names: Names
) -> None:
    """A reading crossing a rule raises an alert seen by board, list and stream; ack propagates."""
    prefix = names.topic_prefix()
    operator = _key(hub, "operator")
    d03_viewer = _key(hub, "viewer", "district=d03")
    stream = Stream(hub.url, operator)
    scoped_stream = Stream(hub.url, d03_viewer)
    assert stream.connected.wait(10)
    assert scoped_stream.connected.wait(10)
    publisher = Publisher(mosquitto.url)
    now = int(time.time() * 1000)
    publisher.publish(
        f"{prefix}/d07/flood_gauge/{names.device(1)}/telemetry",
        {"ts": now - 1000, "seq": 0, "metrics": {"water_level_m": 1.0}},
    )
    publisher.publish(
        f"{prefix}/d03/flood_gauge/{names.device(2)}/telemetry",
        {"ts": now - 1000, "seq": 0, "metrics": {"water_level_m": 1.0}},
    )
    publisher.publish(
        f"{prefix}/d07/flood_gauge/{names.device(1)}/telemetry",
        {"ts": now, "seq": 1, "metrics": {"water_level_m": 3.6}},
    )
    publisher.wait_all()

    def board() -> dict[str, Any]:
        response = _get(hub, operator, "/api/v1/districts/d07/status")
        return response.json() if response.status_code == 200 else {}

    wait_for(lambda: board().get("worst") == "critical", timeout=30, what="d07 critical")
    assert _get(hub, operator, "/api/v1/districts/d03/status").json()["worst"] == "ok"
    alerts = _get(hub, operator, "/api/v1/alerts", state="active").json()
    assert [(a["rule_id"], a["district"]) for a in alerts] == [("api-test-flood", "d07")]
    alert_id = alerts[0]["id"]
    detail = _get(hub, operator, f"/api/v1/alerts/{alert_id}").json()
    assert detail["explanation"]
    assert detail["timeline"][0]["status"] == "firing"
    assert _get(hub, d03_viewer, "/api/v1/alerts").json() == []
    assert _get(hub, d03_viewer, f"/api/v1/alerts/{alert_id}").status_code == 403
    cap = _get(hub, operator, f"/api/v1/alerts/{alert_id}/cap")
    assert cap.headers["content-type"].startswith("application/xml")
    assert "urn:oasis:names:tc:emergency:cap:1.2" in cap.text

    acked = httpx.post(
        f"{hub.url}/api/v1/alerts/{alert_id}/ack",
        json={"comment": "crew dispatched"},
        headers={"Authorization": f"Bearer {operator}"},
        timeout=10,
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged"
    assert _get(hub, operator, f"/api/v1/alerts/{alert_id}").json()["status"] == "acknowledged"
    wait_for(
        lambda: ("alert", "acknowledged") in [(k, e.get("status")) for k, e in stream.events],
        timeout=10,
        what="acknowledged event on the stream",
    )
    figures = _get(hub, operator, "/api/v1/alerts/figures")
    assert figures.status_code == 200, figures.text
    feed = _get(hub, operator, "/api/v1/alerts/cap.atom")
    assert alert_id in feed.text or "<entry" in feed.text
    device = _get(hub, operator, f"/api/v1/devices/{names.device(1)}").json()
    assert device["latest"]["water_level_m"] == 3.6
    wait_for(
        lambda: (
            len(
                _get(
                    hub, operator, f"/api/v1/devices/{names.device(1)}/telemetry", start="-1h"
                ).json()["points"]
            )
            == 2
        ),
        timeout=30,
        what="both readings in the embedded store",
    )
    silence = httpx.post(
        f"{hub.url}/api/v1/silences",
        json={"matchers": {"district": "d07"}, "duration_s": 600, "comment": "works"},
        headers={"Authorization": f"Bearer {operator}"},
        timeout=10,
    )
    assert silence.status_code == 201, silence.text
    listed = _get(hub, operator, "/api/v1/silences").json()
    assert [s["id"] for s in listed] == [silence.json()["id"]]
    expired = httpx.post(
        f"{hub.url}/api/v1/silences/{silence.json()['id']}/expire",
        headers={"Authorization": f"Bearer {operator}"},
        timeout=10,
    )
    assert expired.json()["active"] is False
    assert _get(hub, operator, "/api/v1/dead-letters").status_code == 200
    statuses = [e["status"] for k, e in stream.events if k == "alert"]
    assert statuses[:2] == ["firing", "acknowledged"]
    assert all(e["district"] == "d03" for _, e in scoped_stream.events)
    stream.close()
    scoped_stream.close()
    publisher.close()


def test_rules_crud_through_the_api_uses_the_file_validator(hub: HubProcess) -> None:
    """Rule authors add a rule (hot-reloaded), get file:line errors for a bad one, see changes."""
    author = _key(hub, "rule_author")
    headers = {"Authorization": f"Bearer {author}"}
    bad = "id: broken\nkind: threshold\nmetric: water_level_m\nop: '>'\nvalue: high\n"
    refused = httpx.post(
        f"{hub.url}/api/v1/rules", json={"source_yaml": bad}, headers=headers, timeout=10
    )
    assert refused.status_code == 422
    assert all(":" in p for p in refused.json()["detail"])
    good = (
        "id: api-made\nkind: threshold\nmatch: {asset_type: bridge}\nmetric: strain_ue\n"
        "op: '>'\nvalue: 2500\nseverity: warning\n"
    )
    created = httpx.post(
        f"{hub.url}/api/v1/rules", json={"source_yaml": good}, headers=headers, timeout=10
    )
    assert created.status_code == 201, created.text
    assert created.json()["managed"] is True
    ids = [r["id"] for r in _get(hub, author, "/api/v1/rules").json()]
    assert {"api-test-flood", "api-made"} <= set(ids)
    changes = _get(hub, author, "/api/v1/rules/changes").json()
    assert changes
    assert "api-made" in json.dumps(changes)
    assert httpx.delete(f"{hub.url}/api/v1/rules/api-made", headers=headers).status_code == 204
    assert _get(hub, author, "/api/v1/rules/api-made").status_code == 404
    audit = _get(hub, hub.admin_key, "/api/v1/audit", limit=20).json()
    assert ("POST", "/api/v1/rules", 201) in [(e["method"], e["path"], e["status"]) for e in audit]
