"""``hub demo``: the hub on its embedded defaults plus a simulated city, in one command.

The hub starts with its embedded broker and store under ``HUB_DATA_DIR``; a fleet
of simulated devices (default 320 over districts d01..d08, every asset type of the
catalog) is provisioned into the registry with its locations on first start, then
connects and reports; the ``demo`` scenario (``devices/scenarios/demo.yaml``) plays
a flood, a burst main, a gas leak, a silent gauge, a stuck sensor, a backfill and a
sensor fault in the first minutes. An admin API key is created and printed with the
console's address (its map gets the demo's district outlines). Ctrl-C stops the fleet
(devices say ``offline``) and then the hub; a second start reuses everything in
``HUB_DATA_DIR``.

It works from any working directory, on a machine that already runs a broker or a
web server (CONTRACT §4): when the configured rule paths or routing file do not
exist it loads the rule packs and routes shipped with the hub (hub.packaged), and
when the embedded broker's or the API's port is taken it takes the next free one;
it prints which of each it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devices.scenarios import load_scenario
from devices.signals import DeviceSpec
from devices.simulator import Fleet
from hub.listen import AddressInUse, join, next_free_port, port_free
from hub.logging import get_logger
from hub.packaged import rule_packs_dir
from hub.redact import redact_url
from hub.settings import Settings

log = get_logger(__name__)

#: Districts of the demo city.
DEMO_DISTRICTS = 8
#: Seconds between two readings of one demo device: quicker than real sensors
#: (catalog intervals are 60-300 s) so a newcomer sees movement within a minute.
DEMO_INTERVAL_S = 5.0
#: Name of the demo's admin key; a new start revokes the previous one.
DEMO_KEY_NAME = "demo-admin"
#: Below this the scenario's districts may lack the devices it scripts.
MIN_DEVICES = 300
#: The demo city's district outlines for the console's map (``python -m devices.districts``).
DEMO_DISTRICTS_FILE = Path(__file__).resolve().parent / "scenarios" / "demo-districts.geojson"


def with_demo_outlines(settings: Settings) -> Settings:
    """``settings`` with the demo's district outlines, unless the deployer named a file."""
    if settings.console.districts_geojson is not None:
        return settings
    console = settings.console.model_copy(update={"districts_geojson": DEMO_DISTRICTS_FILE})
    return settings.model_copy(update={"console": console})


#: Starts tried when a port found free is taken before the hub binds it (a race).
PORT_ATTEMPTS = 3
#: Where rules created through the API go when the demo runs on the shipped packs.
MANAGED_RULES_DIR = "managed-rules"


def with_rules(settings: Settings) -> tuple[Settings, list[str]]:
    """The settings with the shipped rule packs, routes and report services wherever the
    configured ones do not exist; and a banner line for the rules and for the routes
    saying which were loaded."""
    packs = rule_packs_dir()
    rules, alerts = settings.rules, settings.alerts
    lines: list[str] = []
    configured = ", ".join(rules.paths) or "(none)"
    if packs is not None and not any(Path(p).exists() for p in rules.paths):
        update: dict[str, Any] = {"paths": [str(packs)]}
        if "managed_dir" not in rules.model_fields_set:
            # Not ./rules/managed: the demo leaves nothing in the working directory.
            update["managed_dir"] = str(settings.data_dir / MANAGED_RULES_DIR)
        rules = rules.model_copy(update=update)
        lines.append(f"{packs} (shipped with the hub; {configured} not found)")
    else:
        lines.append(f"{configured} (HUB_RULES__PATHS)")
    routes = Path(alerts.routes_path)
    if packs is not None and not routes.exists():
        shipped = packs / "routes.yaml"
        alerts = alerts.model_copy(update={"routes_path": str(shipped)})
        lines.append(f"{shipped} (shipped with the hub; {routes} not found)")
    else:
        lines.append(f"{routes} (HUB_ALERTS__ROUTES_PATH)")
    reports = settings.reports
    services = Path(reports.services_path)
    if packs is not None and not services.exists() and (packs / "services.yaml").is_file():
        shipped = packs / "services.yaml"
        # The services citizens may report go with the shipped rule packs, unannounced.
        reports = reports.model_copy(update={"services_path": str(shipped)})
    update = {"rules": rules, "alerts": alerts, "reports": reports}
    return settings.model_copy(update=update), lines


def with_free_ports(settings: Settings) -> tuple[Settings, list[str]]:
    """The settings with the embedded broker's and the API's ports moved to the next
    free ones where they are taken now; and a line for each port taken."""
    notes: list[str] = []
    mqtt, api = settings.mqtt, settings.api
    chosen: set[int] = set()
    if mqtt.embedded:
        host, port = mqtt.embedded_host_port()
        if port != 0 and not port_free(host, port):
            new = next_free_port(host, port)
            notes.append(
                f"{join(host, port)} is in use by another program; the demo's MQTT broker "
                f"listens on {join(host, new)} instead (HUB_MQTT__EMBEDDED_LISTEN)"
            )
            mqtt = mqtt.model_copy(update={"embedded_listen": join(host, new)})
            port = new
        chosen.add(port)
    if api.port != 0 and (api.port in chosen or not port_free(api.host, api.port)):
        new = next_free_port(api.host, api.port, avoid=frozenset(chosen))
        notes.append(
            f"{join(api.host, api.port)} is in use by another program; the console and "
            f"API listen on {join(api.host, new)} instead (HUB_API__PORT)"
        )
        api = api.model_copy(update={"port": new})
    return settings.model_copy(update={"mqtt": mqtt, "api": api}), notes


def provision(registry: Any, specs: Sequence[DeviceSpec]) -> int:
    """Register the fleet's devices (district, type, location) not yet provisioned.

    Devices already provisioned are left alone, so an operator's edits survive a
    restart. Returns how many were added.
    """
    added = 0
    for spec in specs:
        known = registry.get_device(spec.device_id)
        if known is not None and known.provisioned:
            continue
        registry.upsert_device(
            spec.device_id,
            spec.district,
            spec.asset_type,
            spec.latitude,
            spec.longitude,
            {"simulated": True, "install_date": "2025-03-01", "vendor": "hub simulator"},
        )
        added += 1
    return added


def demo_key(conn: Any) -> str:
    """A fresh admin key for this run; the previous run's demo key is revoked."""
    from hub.api.keys import create_key, list_keys, revoke_key

    for key in list_keys(conn, include_revoked=False):
        if key.name == DEMO_KEY_NAME:
            revoke_key(conn, key.id)
    return create_key(conn, role="admin", name=DEMO_KEY_NAME, scopes=None)


async def run_demo(settings: Settings, *, devices: int = 320, rate: float | None = None) -> int:
    """Run the hub and the simulated fleet until SIGINT/SIGTERM; 0 on a clean stop."""
    if devices < 1 or (rate is not None and rate <= 0):
        print("hub demo: --devices must be >= 1 and --rate > 0", file=sys.stderr)
        return 2
    if devices < MIN_DEVICES:
        print(
            f"hub demo: {devices} devices is below {MIN_DEVICES}: some scenario events may "
            "find no device to act on",
            file=sys.stderr,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    scenario = load_scenario("demo")
    settings = with_demo_outlines(settings)
    settings, rule_lines = with_rules(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            hub, settings = await _start_hub(stack, settings)
            fleet = Fleet(
                hub.mqtt_url,
                prefix=settings.mqtt.topic_prefix,
                devices=devices,
                districts=DEMO_DISTRICTS,
                rate=rate if rate is not None else devices / DEMO_INTERVAL_S,
                scenario=scenario,
                seed=1,
                catalog=getattr(hub, "catalog", None),
            )
            added = provision(hub.registry, fleet.specs)
            key = demo_key(hub.state_conn)
            _banner(hub.api_url, hub.mqtt_url, key, devices, added, settings, rule_lines)
            return await _run(hub, fleet, stop)
    except OSError as exc:
        # What the demo cannot work around: the message says which setting to change.
        print(f"hub demo: {exc}", file=sys.stderr, flush=True)
        return 1


async def _start_hub(stack: contextlib.AsyncExitStack, settings: Settings) -> tuple[Any, Settings]:
    """Start the hub on free ports (printing the ones taken); the settings it runs on."""
    from hub.runtime import Hub

    for attempt in range(1, PORT_ATTEMPTS + 1):
        settings, notes = with_free_ports(settings)
        for note in notes:
            print(f"hub demo: {note}", flush=True)
        try:
            hub = await stack.enter_async_context(Hub(settings))
        except AddressInUse:
            # Free a moment ago, taken before the hub bound it: look again.
            if attempt == PORT_ATTEMPTS:
                raise
            continue
        return hub, settings
    raise AssertionError("unreachable")


async def _run(hub: Any, fleet: Fleet, stop: asyncio.Event) -> int:
    fleet_stop = asyncio.Event()
    flying = asyncio.create_task(fleet.run(fleet_stop), name="demo.fleet")
    serving = asyncio.create_task(hub.serve_forever(), name="demo.hub")
    stopping = asyncio.create_task(stop.wait(), name="demo.stop")
    done, _ = await asyncio.wait({flying, serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    # The fleet goes first (devices publish "offline" and disconnect), then the hub.
    fleet_stop.set()
    code = 0
    try:
        stats = await asyncio.wait_for(flying, timeout=20.0)
        log.info("fleet stopped", published=stats.published, backfilled=stats.backfilled)
    except Exception as exc:  # a failed fleet must not keep the hub from stopping cleanly
        log.exception("fleet failed", error=repr(exc))
        code = 1
    serving.cancel()
    stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    if serving in done and not serving.cancelled() and serving.exception() is not None:
        log.error("hub stopped because a stage died", error=repr(serving.exception()))
        code = 1
    print("hub demo: stopped", flush=True)
    return code


def _banner(
    api_url: str,
    mqtt_url: str,
    key: str,
    devices: int,
    added: int,
    settings: Settings,
    rule_lines: Sequence[str],
) -> None:
    rules, routes = rule_lines
    lines = [
        "",
        "hub demo: the hub and a simulated city are running",
        f"hub demo: console    {api_url}/",
        f"hub demo: API        {api_url}/api/v1  (OpenAPI at {api_url}/openapi.json)",
        f"hub demo: broker     {redact_url(mqtt_url)}  topics {settings.mqtt.topic_prefix}/#",
        f"hub demo: fleet      {devices} devices in d01..d{DEMO_DISTRICTS:02d} "
        f"({added} newly provisioned); scenario 'demo' plays in the first minutes",
        f"hub demo: data       {settings.data_dir}",
        f"hub demo: rules      {rules}",
        f"hub demo: routes     {routes}",
        "hub demo: Ctrl-C stops everything; a new start keeps the data",
        f"hub demo: admin key  {key}",
        "",
    ]
    print("\n".join(lines), flush=True)
