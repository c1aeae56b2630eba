"""The dashboard as an operator meets it, in headless Chromium (Debian's /usr/bin/chromium)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from hub.messages import Reading
from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, env_for
from tests.services import Mosquitto, wait_for
from tests.unit.api.conftest import NOW_MS, Api, make_api

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


class Served:
    """The API over fakes, served by uvicorn on a free port in a thread of its own."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        config = uvicorn.Config(
            api.client.app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="dashboard-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> str:
        self.thread.start()
        deadline = threading.Event()
        for _ in range(500):
            if self.server.started:
                break
            deadline.wait(0.01)
        assert self.server.started, "uvicorn did not start"
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the server's loop (the fakes' queues belong to it)."""

        async def run() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, str]]:
    """The dashboard's server and its base URL."""
    for api in make_api(tmp_path):
        readings = [
            Reading(
                "d07",
                "flood_gauge",
                "fg-d07-1",
                NOW_MS - i * 60_000,
                {"water_level_m": 1 + i / 100},
            )
            for i in range(120)
        ]
        asyncio.run(api.store.write(readings))
        server = Served(api)
        base = server.start()
        yield server, base
        server.stop()


def test_operator_sees_a_district_turn_red_and_acknowledges_the_alert(
    served: tuple[Served, str],
) -> None:
    """Key entry, board goes red on a live alert, operator acks from the page, state changes."""
    from playwright.sync_api import expect, sync_playwright

    server, base = served
    api = server.api
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        violations: list[str] = []
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(base + "/")
        page.fill("#key", api.keys["operator"])
        page.click("#login-form button")
        d07 = page.locator('tr[data-district="d07"] th')
        expect(d07).to_have_attribute("data-worst", "ok")
        expect(page.locator("#who")).to_contain_text("operator-key (operator)")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")

        alert = server.call(api.alerts.fire, "d07", "flood_gauge", "fg-d07-1", severity="critical")
        expect(d07).to_have_attribute("data-worst", "critical")
        expect(d07).to_have_class("cond-critical")
        cell = page.locator('tr[data-district="d07"] td[data-asset-type="flood_gauge"]')
        expect(cell).to_have_attribute("data-worst", "critical")
        expect(page.locator('tr[data-district="d03"] th')).to_have_attribute("data-worst", "ok")

        row = page.locator(f'#alerts tr[data-alert-id="{alert.id}"]')
        expect(row.locator(".status")).to_have_text("firing")
        row.locator("button.ack").click()
        expect(row.locator(".status")).to_have_text("acknowledged")
        assert api.alerts.alerts[alert.id].status == "acknowledged"
        assert api.alerts.timelines[alert.id][-1].actor == "operator-key"

        row.locator("button.resolve").click()
        expect(d07).to_have_attribute("data-worst", "ok")
        assert api.alerts.alerts[alert.id].status == "resolved"

        page.goto(base + "/#/device/fg-d07-1")
        expect(page.locator("#chart path.line")).to_have_count(1)
        expect(page.locator("#latest")).to_contain_text("water_level_m")

        page.goto(base + "/#/rules")
        expect(page.locator("#page")).to_contain_text("rule_author role")
        browser.close()
    assert violations == []


def test_rules_page_lists_firing_counts_and_bad_keys_are_refused(
    served: tuple[Served, str],
) -> None:
    """A wrong key is refused on the login form; a rule author sees rules with firing counts."""
    from playwright.sync_api import expect, sync_playwright

    server, base = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(base + "/#/rules")
        page.fill("#key", "hub_00000000_" + "x" * 43)
        page.click("#login-form button")
        expect(page.locator("#login-error")).to_contain_text("refused")
        page.fill("#key", server.api.keys["rule_author"])
        page.click("#login-form button")
        firing = page.locator('#rules tr[data-rule-id="flood-critical"] .firing')
        expect(firing).to_have_text("1")
        browser.close()


RULES = """
rules:
  - id: e2e-flood
    description: River level above 3 m (dashboard end-to-end test)
    match: {asset_type: flood_gauge}
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    clear: 2.8
    for: 0
    severity: critical
"""


@pytest.mark.integration
def test_real_hub_reading_over_a_rule_reddens_the_board_and_the_ack_sticks(
    mosquitto: Mosquitto, names: Names, tmp_path: Path
) -> None:
    """Against a real `hub run`: a reading crossing a rule turns d07 red; the page's ack lands
    and shows, live, on a second operator's dashboard too."""
    from playwright.sync_api import expect, sync_playwright

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "flood.yaml").write_text(RULES, encoding="utf-8")
    prefix = names.topic_prefix()
    hub = HubProcess(
        tmp_path / "hub",
        env_for(prefix, mosquitto.url, HUB_STORE__BACKEND="embedded", HUB_RULES__PATHS=str(rules)),
    )
    hub.start()
    publisher = Publisher(mosquitto.url)
    try:
        operator = hub.cli("keys", "create", "--role", "operator", "--name", "ops").stdout.split()[
            -1
        ]
        viewer = hub.cli("keys", "create", "--role", "viewer", "--name", "colleague").stdout
        viewer = viewer.split()[-1]
        now = int(time.time() * 1000)
        for district in ("d03", "d07"):
            publisher.publish(
                f"{prefix}/{district}/flood_gauge/{names.device(int(district[1:]))}/telemetry",
                {"ts": now - 2000, "seq": 0, "metrics": {"water_level_m": 1.0}},
            )
        publisher.wait_all()
        wait_for(lambda: len(hub.get("/api/v1/devices")) == 2, timeout=30, what="devices")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(hub.url + "/")
            page.fill("#key", operator)
            page.click("#login-form button")
            d07 = page.locator('tr[data-district="d07"] th')
            expect(d07).to_have_attribute("data-worst", "ok")
            expect(page.locator("#live")).to_have_attribute("data-state", "live")
            # A colleague's dashboard in its own browser context (its own key, own stream).
            other = browser.new_context().new_page()
            other.goto(hub.url + "/")
            other.fill("#key", viewer)
            other.click("#login-form button")
            expect(other.locator("#live")).to_have_attribute("data-state", "live")

            publisher.publish(
                f"{prefix}/d07/flood_gauge/{names.device(7)}/telemetry",
                {"ts": now, "seq": 1, "metrics": {"water_level_m": 3.7}},
            )
            publisher.wait_all()
            expect(d07).to_have_attribute("data-worst", "critical", timeout=30_000)
            expect(page.locator('tr[data-district="d03"] th')).to_have_attribute("data-worst", "ok")
            row = page.locator("#alerts tbody tr").first
            expect(row.locator(".status")).to_have_text("firing")
            other_row = other.locator("#alerts tbody tr").first
            expect(other_row.locator(".status")).to_have_text("firing", timeout=30_000)
            row.locator("button.ack").click()
            expect(row.locator(".status")).to_have_text("acknowledged")
            # No reload on the other dashboard: the stream's event redraws it.
            expect(other_row.locator(".status")).to_have_text("acknowledged", timeout=15_000)
            browser.close()
        alerts = hub.get("/api/v1/alerts", state="active")
        assert [(a["district"], a["status"]) for a in alerts] == [("d07", "acknowledged")]
        timeline = hub.get(f"/api/v1/alerts/{alerts[0]['id']}")["timeline"]
        assert ("acknowledged", "ops") in [(t["status"], t["actor"]) for t in timeline]
    finally:
        publisher.close()
        hub.stop()
