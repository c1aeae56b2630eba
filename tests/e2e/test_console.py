"""The operations console as operators meet it: a real `hub run` with the demo's city,
driven in Debian's Chromium (/usr/bin/chromium) through Playwright, one browser for
the module. The hub is provisioned with the demo fleet (320 devices, their places
and the demo's district outlines) and fed the demo scenario's incidents: a flood in
d03 up to the area emergency, a gas leak in d05, a burst main in d02, one device
offline and two never heard. A background publisher keeps every other device
reporting, so nothing goes stale or silent while the tests run.

Screenshots of every page are kept in the folder printed at the start (pytest's
temporary folder, or ``HUB_E2E_ARTEFACTS``).
"""

from __future__ import annotations

import csv
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.signals import SignalModel, rounded
from devices.simulator import build_fleet
from tests.conftest import Names
from tests.hubproc import HubProcess, Publisher, env_for
from tests.services import Mosquitto, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "tests" / "data" / "vendor" / "axe-core" / "axe.min.js"
OUTLINES = REPO / "devices" / "scenarios" / "demo-districts.geojson"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
]

FLOOD = [f"fg-d03-00{n}" for n in range(1, 6)]
GAS = "mh-d05-002"
MAIN = "wm-d02-001"
OFFLINE = "aq-d06-001"
NEVER = ("sl-d08-010", "fg-d08-006")
#: Seconds between two readings of the background fleet (well inside every interval).
BACKGROUND_EVERY_S = 15.0


class City:
    """The hub, its keys, the fleet and a publisher keeping the fleet alive."""

    def __init__(self, hub: HubProcess, prefix: str, mqtt_url: str, artefacts: Path) -> None:
        self.hub = hub
        self.prefix = prefix
        self.artefacts = artefacts
        self.fleet = build_fleet(320, 8)
        self.specs = {s.device_id: s for s in self.fleet}
        self.publisher = Publisher(mqtt_url)
        self.models = {s.device_id: SignalModel(s, seed=1) for s in self.fleet}
        self.keys: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_alive, daemon=True)
        self.quiet: set[str] = {OFFLINE, *NEVER}

    def topic(self, device_id: str, kind: str = "telemetry") -> str:
        spec = self.specs[device_id]
        return f"{self.prefix}/{spec.district}/{spec.asset_type}/{device_id}/{kind}"

    def reading(self, device_id: str, ts_ms: int, **override: float) -> None:
        metrics = rounded(self.models[device_id].sample(ts_ms))
        metrics.update(override)
        self.publisher.publish(self.topic(device_id), {"ts": ts_ms, "metrics": metrics})

    def overrides(self, device_id: str) -> dict[str, float]:
        if device_id in FLOOD:
            return {"water_level_m": 3.8}
        if device_id == GAS:
            return {"methane_pct_lel": 28.0, "h2s_ppm": 35.0}
        if device_id == MAIN:
            return {"pressure_bar": 0.7}
        return {}

    def everyone(self, ts_ms: int) -> None:
        for device_id in self.specs:
            if device_id not in self.quiet:
                self.reading(device_id, ts_ms, **self.overrides(device_id))

    def _keep_alive(self) -> None:
        while not self._stop.wait(BACKGROUND_EVERY_S):
            self.everyone(int(time.time() * 1000))

    def start(self) -> None:
        """The scenario's incidents (in event time), then the whole fleet, kept alive."""
        now = int(time.time() * 1000)
        for device_id in FLOOD:  # 1 m, then above 3 m for 3 minutes: flood-critical holds 1m
            for minutes, level in ((4, 1.0), (3, 3.4), (2, 3.5), (1, 3.6)):
                self.reading(device_id, now - minutes * 60_000, water_level_m=level)
        for minutes in (3, 2, 1):  # the main's pressure collapses and stays low for 1m
            self.reading(MAIN, now - minutes * 60_000, pressure_bar=0.7 if minutes < 3 else 4.2)
        self.publisher.publish(self.topic(OFFLINE, "status"), {"state": "offline", "ts": now})
        self.everyone(now)
        self.publisher.wait_all()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.publisher.close()

    def get(self, path: str, **params: Any) -> Any:
        return self.hub.get(path, **params)

    def active(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/alerts", state="active", limit=1000))

    def alert(self, rule_id: str, source: str) -> dict[str, Any]:
        found = [a for a in self.active() if a["rule_id"] == rule_id and a["source"] == source]
        assert found, f"no open {rule_id} alert on {source}"
        return found[0]


@pytest.fixture(scope="module")
def city(
    mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[City]:
    """A real hub with the demo city in it (see the module docstring)."""
    root = tmp_path_factory.mktemp("console")
    artefacts = Path(os.environ.get("HUB_E2E_ARTEFACTS") or root / "screenshots")
    artefacts.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"console screenshots: {artefacts}")
    prefix = Names("console-e2e").topic_prefix()
    hub = HubProcess(
        root / "hub",
        env_for(
            prefix,
            mosquitto.url,
            HUB_CONSOLE__DISTRICTS_GEOJSON=str(OUTLINES),
            HUB_LOG__LEVEL="WARNING",
            HUB_INDICATORS__SAVE_INTERVAL_S="5",  # indicator values within seconds
        ),
    )
    fleet_file = root / "fleet.csv"
    with fleet_file.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "asset_type", "district", "latitude", "longitude"])
        for s in build_fleet(320, 8):
            writer.writerow([s.device_id, s.asset_type, s.district, s.latitude, s.longitude])
    hub.data_dir.mkdir(parents=True, exist_ok=True)
    hub.cli("devices", "import", str(fleet_file))
    hub.start()
    town = City(hub, prefix, mosquitto.url, artefacts)
    for role in ("viewer", "operator"):
        out = hub.cli("keys", "create", "--role", role, "--name", f"{role}-e2e").stdout
        town.keys[role] = out.split()[-1]
    town.keys["admin"] = hub.admin_key
    town.start()
    try:
        wait_for(
            lambda: (
                any(a["rule_id"] == "flood-area-emergency" for a in town.active())
                and any(a["rule_id"] == "methane-evacuate" for a in town.active())
                and any(a["rule_id"] == "pressure-very-low" for a in town.active())
            ),
            timeout=60,
            interval=0.5,
            what="the scenario's alerts",
        )
        yield town
    finally:
        town.stop()
        hub.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; each test opens its own context (own storage)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """A signed-in console page and what it logged."""

    def __init__(self, browser: Any, city: City, role: str, **context: Any) -> None:
        self.city = city
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        self.page.goto(city.hub.url + "/")
        self.page.fill("#key", city.keys[role])
        self.page.click("#login-form button")
        self.page.wait_for_selector("#who")

    def open(self, route: str) -> Any:
        self.page.goto(f"{self.city.hub.url}/#/{route}")
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.city.artefacts / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], self.errors


@pytest.fixture
def operator(browser: Any, city: City) -> Iterator[Console]:
    """The console signed in with an operator's key."""
    console = Console(browser, city, "operator")
    yield console
    console.close()


def test_login_with_a_key(browser: Any, city: City) -> None:
    """A wrong key is refused on the sign-in form; the right one opens the board."""
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    page.goto(city.hub.url + "/")
    page.fill("#key", "hub_00000000_" + "x" * 43)
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("refused")
    page.fill("#key", city.keys["operator"])
    page.click("#login-form button")
    expect(page.locator("#who")).to_have_attribute("data-role", "operator")
    expect(page.locator("#board")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    context.close()


def test_flood_shows_the_emergency_first_with_its_device_alerts_folded(operator: Console) -> None:
    """The d03 flood's area emergency heads the list; its gauges' alerts fold under it,
    inhibited, until unfolded."""
    from playwright.sync_api import expect

    page = operator.open("alerts")
    first = page.locator("#incidents > li").first
    expect(first).to_have_attribute("data-severity", "emergency")
    head = first.locator(".head .alert-row")
    expect(head).to_contain_text("d03")
    members = first.locator(".members")
    expect(members).to_be_hidden()
    flood_alerts = [
        a
        for a in operator.city.active()
        if a["district"] == "d03" and a["asset_type"] == "flood_gauge"
    ]
    fold = first.locator("button.fold")
    expect(fold).to_have_attribute("aria-expanded", "false")
    fold.click()
    expect(members).to_be_visible()
    expect(members.locator(".alert-row")).to_have_count(len(flood_alerts) - 1)
    critical = members.locator('.alert-row[data-severity="critical"]')
    expect(critical).to_have_count(len(FLOOD))
    expect(critical.first.locator('[data-muted="inhibited"]')).to_be_visible()
    operator.shot("alerts")


def test_alert_page_shows_the_explanation_values_and_the_threshold(operator: Console) -> None:
    """A flood gauge's alert shows the observed level, the 3 m threshold and a chart of
    its readings with the threshold line."""
    from playwright.sync_api import expect

    alert = operator.city.alert("flood-critical", FLOOD[0])
    page = operator.open(f"alert/{alert['id']}")
    detail = operator.city.get(f"/api/v1/alerts/{alert['id']}")
    value = detail["explanation"]["observed"]["water_level_m"]
    expect(page.locator('[data-observed="water_level_m"] .observed-value')).to_contain_text(
        f"{value:g}"
    )
    expect(page.locator(".threshold-value")).to_contain_text("3 m")
    expect(page.locator("#explanation")).to_contain_text(detail["explanation"]["summary"])
    chart = page.locator("#alert-chart")
    expect(chart).to_have_attribute("data-mode", "raw")
    assert int(chart.get_attribute("data-points") or 0) >= 4
    expect(page.locator("#alert-chart canvas")).to_have_count(1)
    operator.shot("alert")


def test_acknowledge_with_a_comment_appears_in_the_timeline(operator: Console) -> None:
    """The operator acknowledges the gas leak with a comment: status and timeline show it."""
    from playwright.sync_api import expect

    alert = operator.city.alert("methane-evacuate", GAS)
    page = operator.open(f"alert/{alert['id']}")
    page.fill("#comment", "crew on the way, area closed")
    page.click("#ack")
    expect(page.locator('#alert-state [data-status="acknowledged"]')).to_be_visible()
    step = page.locator('#timeline li[data-status="acknowledged"]')
    expect(step).to_contain_text("operator-e2e")
    expect(step.locator(".comment")).to_have_text("crew on the way, area closed")
    expect(page.locator("#ack")).to_have_count(0)
    timeline = operator.city.get(f"/api/v1/alerts/{alert['id']}")["timeline"]
    assert ("acknowledged", "operator-e2e", "crew on the way, area closed") in [
        (t["status"], t["actor"], t["comment"]) for t in timeline
    ]


def test_resolving_an_open_alert_asks_first_and_says_what_happens(operator: Console) -> None:
    """Resolve on a still-open alert opens a confirmation that explains the consequence;
    cancelling leaves the alert open."""
    from playwright.sync_api import expect

    alert = operator.city.alert("h2s-danger", GAS)
    page = operator.open(f"alert/{alert['id']}")
    page.click("#resolve")
    dialog = page.locator('[role="alertdialog"]')
    expect(dialog).to_contain_text("fires again")
    page.click("#cancel-resolve")
    expect(dialog).to_have_count(0)
    assert operator.city.get(f"/api/v1/alerts/{alert['id']}")["status"] != "resolved"


def test_a_silence_created_from_an_alert_mutes_it(operator: Console) -> None:
    """From the burst main's alert: the silence form comes prefilled, its preview lists
    the alert, and once saved the alert shows as silenced."""
    from playwright.sync_api import expect

    alert = operator.city.alert("pressure-very-low", MAIN)
    assert alert["muted_by"] is None
    page = operator.open(f"alert/{alert['id']}")
    page.click("#silence")
    form = page.locator("#silence-form")
    expect(form.locator('input[name="value"]').first).to_have_value("d02")
    expect(page.locator(f'#silence-preview [data-alert-id="{alert["id"]}"]')).to_be_visible()
    operator.shot("silence-new")
    page.fill("#silence-comment", "valve crew isolating the main")
    page.click("#save-silence")
    expect(page.locator('#alert-state [data-muted="silence"]')).to_be_visible()
    assert operator.city.get(f"/api/v1/alerts/{alert['id']}")["muted_by"].startswith("silence:")
    page = operator.open("silences")
    expect(page.locator("#silences tbody tr")).to_have_count(1)
    operator.shot("silences")


def _expected_states(city: City) -> dict[str, str]:
    rank = {"info": 1, "warning": 2, "critical": 3, "emergency": 4}
    worst: dict[str, str] = {}
    for a in city.active():
        if a["source"] != "_area" and rank[a["severity"]] > rank.get(worst.get(a["source"], ""), 0):
            worst[a["source"]] = a["severity"]
    states = {}
    for d in city.get("/api/v1/devices", limit=1000):
        if d["device_id"] in worst:
            states[d["device_id"]] = worst[d["device_id"]]
        elif d["status"] == "offline":
            states[d["device_id"]] = "offline"
        elif d["stale"]:
            states[d["device_id"]] = "stale"
        elif d["last_seen_ms"] is None:
            states[d["device_id"]] = "never"
        else:
            states[d["device_id"]] = "ok"
    return states


def test_the_map_shows_every_device_of_the_demo_with_the_right_colours(
    operator: Console,
) -> None:
    """All 320 demo devices are on the map, the legend counts each state as the API says,
    and a device found by id is drawn in its state's colour."""
    from playwright.sync_api import expect

    page = operator.open("map")
    expect(page.locator("#map-plotted")).to_have_attribute("data-count", "320")
    expect(page.locator("#map path.district")).to_have_count(8)
    expected = _expected_states(operator.city)
    assert expected[OFFLINE] == "offline"
    assert expected[NEVER[0]] == "never"
    assert expected[GAS] in ("critical", "emergency")
    counts: dict[str, int] = {}
    for state in expected.values():
        counts[state] = counts.get(state, 0) + 1
    for state in ("emergency", "critical", "warning", "info", "offline", "stale", "never", "ok"):
        expect(page.locator(f'.legend li[data-state="{state}"] .count')).to_have_text(
            str(counts.get(state, 0))
        )
    for device_id in (GAS, OFFLINE, NEVER[0], "br-d01-001"):
        marker = page.locator(f'#map path.device[data-device-id="{device_id}"]')
        page.fill("#find-device", device_id)
        page.click(".find button")
        if not marker.is_visible():
            # A live refresh of the map may land between the click and the redraw.
            page.wait_for_timeout(1000)
            page.click(".find button")
        expect(marker).to_be_visible()
        expect(marker).to_have_class(re.compile(rf"\bstate-{expected[device_id]}\b"))
    operator.shot("map")


def test_a_chart_shows_raw_points_within_a_minute_of_the_first_reading(
    operator: Console,
) -> None:
    """A never-heard gauge's page shows an empty chart; its first reading appears on it,
    as a raw point, without reloading the page."""
    from playwright.sync_api import expect

    city = operator.city
    device = NEVER[1]
    page = operator.open(f"device/{device}")
    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-points", "0")
    city.reading(device, int(time.time() * 1000), water_level_m=1.25)
    city.publisher.wait_all()
    expect(chart).to_have_attribute("data-points", "1", timeout=60_000)
    expect(chart).to_have_attribute("data-mode", "raw")
    expect(chart.locator(".chart-summary")).to_contain_text("1.25")
    operator.shot("device")


def test_a_viewer_sees_no_write_controls(browser: Any, city: City) -> None:
    """A viewer's console offers no acknowledge, resolve, comment, silence or expire, and
    no rules page; the data is there."""
    from playwright.sync_api import expect

    viewer = Console(browser, city, "viewer")
    page = viewer.open("alerts")
    expect(page.locator("#incidents > li").first).to_be_visible()
    expect(page.locator("button.ack")).to_have_count(0)
    alert = city.alert("flood-critical", FLOOD[1])
    page = viewer.open(f"alert/{alert['id']}")
    expect(page.locator("#explanation")).to_be_visible()
    for control in ("#ack", "#resolve", "#add-comment", "#comment", "#silence"):
        expect(page.locator(control)).to_have_count(0)
    page = viewer.open("silences")
    expect(page.locator("button.expire")).to_have_count(0)
    expect(page.get_by_role("link", name="New silence")).to_have_count(0)
    expect(page.locator('nav a[data-page="rules"]')).to_have_count(0)
    page = viewer.open(f"device/{GAS}")
    expect(page.locator("#device-facts")).to_be_visible()
    expect(page.locator("#dead-letters, #dl-title")).to_have_count(0)
    viewer.shot("viewer-device")
    viewer.close()


def test_operators_see_what_open_data_publishes_and_the_release_log(
    browser: Any, city: City
) -> None:
    """The open-data page shows the policy in effect (traffic counters aggregate-only with k,
    flood gauges device by device, nothing of manholes) and the release log, which starts with
    the policy taking effect; in Chinese too. Viewers have no such page."""
    from playwright.sync_api import expect

    operator = Console(browser, city, "operator")
    page = operator.open("open-data")
    traffic = page.locator('#open-policy tr[data-metric="traffic_counter:vehicles_per_min"]')
    expect(traffic).to_contain_text("Aggregates only")
    expect(traffic.locator("td").nth(3)).to_have_text("5")
    gauge = page.locator('#open-policy tr[data-metric="flood_gauge:water_level_m"]')
    expect(gauge).to_contain_text("Device by device")
    expect(page.locator('#open-policy tr[data-metric^="manhole:"]')).to_have_count(0)
    expect(page.locator('#open-releases tr[data-kind="policy"]')).to_have_count(1)
    expect(page.locator("#open-version")).to_contain_text("version")
    operator.shot("open-data")
    page.select_option("#language", "zh-CN")
    expect(traffic).to_contain_text("仅聚合")
    operator.close()
    viewer = Console(browser, city, "viewer")
    expect(viewer.page.locator('nav a[data-page="open-data"]')).to_have_count(0)
    viewer.close()


def test_the_console_speaks_chinese_to_a_chinese_browser(browser: Any, city: City) -> None:
    """With zh-CN as the browser's language the console is in Chinese, metric names and
    units included; the switch brings English back."""
    from playwright.sync_api import expect

    console = Console(browser, city, "operator", locale="zh-CN")
    page = console.page
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("h1")).to_have_text("状态总览")
    expect(page.locator('nav a[data-page="alerts"]')).to_have_text("告警")
    page = console.open(f"device/{FLOOD[0]}")
    expect(page.locator('#latest tr[data-metric="water_level_m"]')).to_contain_text("水位")
    expect(page.locator('#latest tr[data-metric="water_level_m"]')).to_contain_text("米")
    console.shot("device-zh-CN")
    page = console.open("indicators")
    expect(page.locator('nav a[data-page="indicators"]')).to_have_text("指标")
    expect(page.locator("#about-title")).to_have_text("数据完整率")
    page.select_option("#language", "en")
    expect(page.locator("#about-title")).to_have_text("Data completeness")
    console.close()


def _axe(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_or_critical_violation_on_any_page(browser: Any, city: City) -> None:
    """axe-core scans every page (board, alerts, an alert, silences, map, devices, a device,
    rules, sign-in): no serious or critical violation. Each page is kept as a screenshot.
    (The scan is injected into the page, so these contexts bypass the CSP.)"""
    operator = Console(browser, city, "operator", bypass_csp=True)
    alert = city.alert("flood-critical", FLOOD[2])
    pages = {
        "board": ("board", "#board"),
        "alerts-list": ("alerts", "#incidents"),
        "alert-detail": (f"alert/{alert['id']}", "#alert-chart canvas"),
        "silences-list": ("silences", "h1"),
        "silence-form": ("silences?new=1&m.district=d03", "#silence-preview"),
        "map-page": ("map", "#map path.district"),
        "devices-list": ("devices/d03/flood_gauge", "#devices"),
        "device-page": (f"device/{FLOOD[2]}", "#chart canvas"),
        "open-data": ("open-data", "#open-releases"),
        "indicators": ("indicators?district=d08", "#drill-down"),
    }
    found: dict[str, list[str]] = {}
    page = operator.page
    for name, (route, ready) in pages.items():
        operator.open(route)
        page.wait_for_selector(ready)
        problems = _axe(page)
        if problems:
            found[name] = [f"{v['id']}: {v['help']} ({len(v['nodes'])}x)" for v in problems]
        operator.shot(name)
    operator.close()
    admin = Console(browser, city, "admin", bypass_csp=True)
    admin.open("rules").wait_for_selector("#rules")
    if problems := _axe(admin.page):
        found["rules"] = [f"{v['id']}: {v['help']}" for v in problems]
    admin.shot("rules")
    admin.close()
    signin = browser.new_context(bypass_csp=True).new_page()
    signin.goto(city.hub.url + "/")
    signin.wait_for_selector("#login-form")
    if problems := _axe(signin):
        found["sign-in"] = [f"{v['id']}: {v['help']}" for v in problems]
    signin.screenshot(path=str(city.artefacts / "sign-in.png"))
    signin.context.close()
    assert found == {}


def test_indicators_page_ranks_districts_and_drills_down_to_the_silent_devices(
    operator: Console,
) -> None:
    """The indicators page draws completeness per district, ranks the districts worst
    first with numerators and denominators, and a district's drill-down lists its
    never-heard device first; another indicator and period are one click away."""
    from playwright.sync_api import expect

    def d08_devices() -> list[dict[str, Any]]:
        found = operator.city.get(
            "/api/v1/indicators/data_completeness_pct/devices", district="d08", start="-1d"
        )
        return list(found["devices"])

    def landed() -> bool:
        # Every reporting device's roll-ups are in (live checkpoint and save), and the
        # worst device is a never-heard one (fg-d08-006 may have had one reading from
        # the chart test; the 5-minute streetlight is expected from its first slot).
        devices = d08_devices()
        reporting = [d for d in devices if d["device_id"] not in NEVER]
        return (
            bool(devices)
            and devices[0]["device_id"] in NEVER
            and all(d["numerator"] > 0 for d in reporting)
        )

    wait_for(landed, timeout=90, what="d08 roll-ups")
    page = operator.open("indicators")
    ranking = page.locator("#ranking tbody tr")
    expect(ranking).to_have_count(8, timeout=60_000)  # the demo's eight districts
    expect(page.locator("#indicator-chart canvas").first).to_be_visible()
    values = [float(v.rstrip("%")) for v in ranking.locator("td:nth-child(3)").all_inner_texts()]
    assert values == sorted(values), values  # higher is better: worst first
    assert "÷" in ranking.first.locator("td:nth-child(4)").inner_text()
    page.locator('#ranking tr[data-district="d08"] a').click()
    rows = page.locator("#drill-down tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.first.get_attribute("data-device-id") in NEVER
    shown = [float(v.rstrip("%")) for v in rows.locator("td:nth-child(3)").all_inner_texts()]
    assert shown == sorted(shown), shown  # worst first
    operator.shot("indicators")
    page.select_option("#indicator", "device_availability_pct")
    page.click('button[data-period="week"]')
    expect(page.locator("#about-title")).to_have_text("Device availability")
    expect(page.locator('button[data-period="week"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#ranking tbody tr")).to_have_count(8)


def test_stopping_the_hub_shows_disconnected_with_data_as_of(operator: Console) -> None:
    """With the hub stopped the console says it is disconnected and since when its data
    is; started again, it goes back to live by itself. (Last: it stops the hub.)"""
    from playwright.sync_api import expect

    city = operator.city
    page = operator.open("board")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    city.hub.stop()
    banner = page.locator("#connection")
    expect(banner).to_have_attribute("data-state", "down", timeout=30_000)
    expect(banner).to_contain_text("data as of")
    expect(page.locator("main")).to_have_class("disconnected")
    operator.shot("disconnected")
    city.hub.start()
    expect(banner).to_have_attribute("data-state", "live", timeout=30_000)
    assert httpx.get(city.hub.url + "/api/v1/health", timeout=5).status_code == 200
