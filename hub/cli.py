"""The ``hub`` command (CONTRACT §4): builds settings, then hands over to one job.

Each subcommand imports what it needs lazily so ``hub rules check`` does not pay
for the web stack, and a missing optional piece fails only its own command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hub.datadir import private_umask
from hub.settings import ConfigError, Settings, load_settings

_DESCRIPTION = (
    "The city sensing hub: field sensors' readings arrive over MQTT, are kept, checked "
    "against rules and turned into alerts for responders; an HTTP API and a dashboard "
    "serve the operations centre."
)
_EPILOG = (
    "Settings come from HUB_* environment variables (nested with __, e.g. HUB_API__PORT), "
    "over an optional --config FILE, over defaults: README.md, 'Configuration'. "
    "Run `hub COMMAND --help` for a command's options."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML settings file (the environment wins)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: Any, name: str, help_text: str, description: str
    ) -> argparse.ArgumentParser:
        sub_parser: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=description
        )
        return sub_parser

    run = command(
        sub,
        "run",
        "the service: ingest, store, rules, alerts, API and console",
        "Run the hub until Ctrl-C or SIGTERM. With no broker or store configured it runs on "
        "the embedded defaults: its own MQTT broker on HUB_MQTT__EMBEDDED_LISTEN "
        "(127.0.0.1:1883) and an on-disk store under HUB_DATA_DIR (./var). A port that is "
        "taken is an error naming the setting to change.",
    )
    run.add_argument(
        "--config",
        type=Path,
        dest="config_sub",
        metavar="FILE",
        help="YAML settings file (the environment wins)",
    )

    demo = command(
        sub,
        "demo",
        "the hub with a simulated city: readings and alerts within a minute",
        "Run the hub on its embedded defaults with a simulated fleet of sensors in eight "
        "districts and a scripted flood, burst main and gas leak, so that readings and alerts "
        "show within a minute. Prints the dashboard's address and an admin key. Takes the "
        "next free port when the broker's or the API's is in use, and the rule packs shipped "
        "with the hub when ./rules is not there. Ctrl-C stops it; a new start keeps the data.",
    )
    demo.add_argument(
        "--config",
        type=Path,
        dest="config_sub",
        metavar="FILE",
        help="YAML settings file (the environment wins)",
    )
    demo.add_argument(
        "--devices",
        type=int,
        default=320,
        metavar="N",
        help="simulated devices (default 320; the scenario expects at least 300)",
    )
    demo.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="readings per second across the fleet (default: each device every 5 s)",
    )

    sim = command(
        sub,
        "simulate",
        "field-sensor fleet simulator, publishing to any MQTT broker",
        "Publish readings of a simulated fleet of field sensors to an MQTT broker, as real "
        "devices do: births and last wills, rising seq, backfill after a lost link, and "
        "optionally scripted incidents, SenML and malformed messages (docs/simulator.md).",
    )
    sim.add_argument(
        "--mqtt",
        required=True,
        metavar="URL",
        help="broker: mqtt://[user:pass@]host:port, or mqtts://... for TLS",
    )
    sim.add_argument(
        "--devices", type=int, default=100, metavar="N", help="simulated devices (default 100)"
    )
    sim.add_argument(
        "--rate",
        type=float,
        default=10.0,
        metavar="R",
        help="readings per second across the fleet (default 10; 0: as fast as the broker "
        "acknowledges)",
    )
    sim.add_argument(
        "--scenario",
        default=None,
        metavar="NAME",
        help="scripted incidents: a shipped scenario (demo) or a YAML file (default: none)",
    )
    sim.add_argument(
        "--prefix",
        default="city",
        help="topic prefix, the hub's HUB_MQTT__TOPIC_PREFIX (default city)",
    )
    sim.add_argument(
        "--senml", action="store_true", help="publish SenML (RFC 8428) packs instead of JSON"
    )
    sim.add_argument(
        "--malformed",
        type=float,
        default=0.0,
        metavar="F",
        help="share (0..1) of messages that break the contract on purpose (default 0)",
    )
    sim.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    sim.add_argument(
        "--districts",
        type=int,
        default=6,
        metavar="K",
        help="districts d01..dKK the devices are spread over (default 6)",
    )
    sim.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="the same seed gives the same fleet: ids, places, signal noise (default 1)",
    )
    sim.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="P",
        help="split the fleet over P processes, each with its share (default 1)",
    )

    rules = command(
        sub,
        "rules",
        "rule files: check them, or backtest them on stored history",
        "Work with rule files (docs/rules.md): check them before they go live, or run "
        "them over stored history to see the alerts they would have raised.",
    )
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = command(
        rules_sub,
        "check",
        "validate rule files and routing files; exit 1 on any problem",
        "Validate rule files and alert routing files. Prints file:line: message for each "
        "problem and exits 1 if there is any.",
    )
    check.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="rule files or folders (default: HUB_RULES__PATHS and HUB_ALERTS__ROUTES_PATH)",
    )
    backtest = command(
        rules_sub,
        "backtest",
        "run rules over stored history and list the alerts they would have raised",
        "Run the rules of PATH over the readings stored between --start and --end "
        "(embedded store or InfluxDB, as configured) and report the alerts they would have "
        "raised. Nothing is written and nobody is notified.",
    )
    backtest.add_argument("path", type=Path, metavar="PATH", help="rule file or folder")
    times = "epoch ms, RFC 3339 with offset (2025-11-26T17:30:00Z), or relative like -6h"
    backtest.add_argument("--start", required=True, metavar="T", help=f"from: {times}")
    backtest.add_argument("--end", required=True, metavar="T", help=f"to: {times}")
    backtest.add_argument("--json", action="store_true", help="JSON output")

    keys = command(
        sub,
        "keys",
        "API keys: create, list, revoke",
        "Manage the API keys of this hub's data dir. A key is printed once, when it is "
        "created, and stored hashed.",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = command(
        keys_sub,
        "create",
        "create a key; printed once as the last word, stored hashed",
        "Create an API key. The key is the last word of the output, shown this once.",
    )
    create.add_argument(
        "--role",
        required=True,
        choices=["viewer", "operator", "rule_author", "admin"],
        help="what the key may do: viewer < operator < rule_author < admin",
    )
    create.add_argument(
        "--name",
        required=True,
        help="who or what the key is for; no two active keys share a name",
    )
    create.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="KIND=VALUE",
        help="limit the key to district=d01 or asset_type=manhole (repeat, or list with commas)",
    )
    create.add_argument(
        "--expires",
        metavar="WHEN",
        help="the key stops working after this long (90d, 12h) or at this time (RFC 3339 "
        "with offset); then it is refused like a revoked key. Default: never",
    )
    create.add_argument(
        "--purpose",
        default="",
        metavar="TEXT",
        help="what the key is for (one line, e.g. a department's study); shown in "
        "`hub keys list`, the API's key list and the audit report",
    )
    command(keys_sub, "list", "list keys (never the secrets)", "List every key, without secrets.")
    revoke = command(
        keys_sub, "revoke", "revoke a key by id or name", "Revoke a key: it stops working at once."
    )
    revoke.add_argument("key", metavar="KEY", help="the key's id, the key itself, or its name")

    devices = command(
        sub,
        "devices",
        "device provisioning and broker credentials",
        "Provision devices into the registry, and write the broker's per-device passwords "
        "and ACL (docs/devices.md).",
    )
    dev_sub = devices.add_subparsers(dest="devices_command", required=True, metavar="COMMAND")
    imp = command(
        dev_sub,
        "import",
        "provision devices from a CSV or YAML file",
        "Provision or update devices (district, type, location, metadata) from a CSV or "
        "YAML file. Nothing is imported if any row has a problem.",
    )
    imp.add_argument("file", type=Path, metavar="FILE", help="CSV or YAML file of devices")
    cred = command(
        dev_sub,
        "credentials",
        "write Mosquitto's password file and ACL for every provisioned device",
        "Write a Mosquitto password file, an ACL and the devices' passwords (all 0600) for "
        "every provisioned device and the hub's own account. Existing passwords are kept.",
    )
    cred.add_argument(
        "--out",
        type=Path,
        default=Path("deploy/mosquitto/generated"),
        metavar="DIR",
        help="folder to write passwd, acl and credentials.csv to "
        "(default deploy/mosquitto/generated)",
    )
    cred.add_argument(
        "--hub-user",
        default="hub",
        metavar="NAME",
        help="the broker account the hub itself uses (default hub)",
    )

    ind = command(
        sub,
        "indicators",
        "the city's indicators: report and rebuild",
        "The indicators of this hub's data dir (docs/indicators.md): a report per district "
        "as HTML or CSV, and roll-ups recomputed from stored history.",
    )
    ind_sub = ind.add_subparsers(dest="indicators_command", required=True, metavar="COMMAND")
    report = command(
        ind_sub,
        "report",
        "indicator report per district, as HTML or CSV",
        "Write the indicator report of the periods between --start and --end: for the city "
        "and each district (or one), every indicator with its numerator and denominator, "
        "its target and the change since the period before, charts and the worst devices "
        "(HTML), or one row per indicator, period and district (CSV).",
    )
    report.add_argument(
        "--period",
        required=True,
        choices=["day", "week", "month"],
        help="local days, ISO weeks or months",
    )
    report.add_argument("--start", required=True, metavar="T", help=f"from: {times}")
    report.add_argument("--end", required=True, metavar="T", help=f"to: {times}, or now")
    report.add_argument("--district", default=None, metavar="D", help="one district (default: all)")
    report.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="FILE.html or FILE.csv to write"
    )
    rebuild = command(
        ind_sub,
        "rebuild",
        "recompute indicator roll-ups from stored history",
        "Recompute the indicator roll-ups of the hours between --start and --end from the "
        "readings in the store (embedded or InfluxDB, as configured): after changing a "
        "threshold, or after a crash. The hours a running hub keeps in memory are left to it.",
    )
    rebuild.add_argument("--start", required=True, metavar="T", help=f"from: {times}")
    rebuild.add_argument("--end", default=None, metavar="T", help=f"to: {times} (default now)")

    aud = command(
        sub,
        "audit",
        "the audit log: verify its hash chain",
        "The audit log of this hub's data dir (docs/indicators.md, accountability).",
    )
    aud_sub = aud.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    ver = command(
        aud_sub,
        "verify",
        "check the hash chain; exit 1 if the log was tampered with",
        "Check every entry's hash and its link to the one before: a changed, deleted or "
        "inserted entry is named and the exit code is 1. Prints the head (ID:HASH) to note; "
        "--head checks later that it is still there.",
    )
    ver.add_argument(
        "--head", default=None, metavar="ID:HASH", help="a head printed by an earlier verify"
    )
    reports = command(
        sub,
        "reports",
        "citizen reports: erase a reporter's contact data",
        "Work with the citizen reports of this hub's data dir (docs/reports.md).",
    )
    reports_sub = reports.add_subparsers(dest="reports_command", required=True, metavar="COMMAND")
    erase = command(
        reports_sub,
        "erase",
        "erase the e-mail, name and phone given with reports from an address",
        "Erase the contact data (e-mail, name, phone, device and account ids) of every report "
        "sent with this e-mail address, whatever its case. The reports stay, without them. "
        "The erasure is written to the audit log (without the address).",
    )
    erase.add_argument("--email", required=True, metavar="ADDRESS", help="the reporter's e-mail")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hub`` console script; returns the exit code."""
    args = _parser().parse_args(_relative_times(sys.argv[1:] if argv is None else argv))
    # Before anything is created: the data dir and everything in it are private to
    # this account, whoever writes it (the hub, its children, libraries).
    previous_umask = private_umask()
    try:
        return _main(args)
    finally:
        os.umask(previous_umask)  # for a caller in the same process (tests)


def _main(args: argparse.Namespace) -> int:
    config = getattr(args, "config_sub", None) or args.config
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        print(f"hub: configuration error: {exc}", file=sys.stderr)
        return 2
    from hub import logging as hub_logging

    hub_logging.configure(settings.log)
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130


#: Options whose value may be a relative time such as ``-6h``.
_TIME_OPTIONS = frozenset({"--start", "--end"})


def _relative_times(argv: Sequence[str]) -> list[str]:
    """``--start -6h`` as ``--start=-6h``: argparse takes a value that starts with ``-``
    (and is not a plain number) for an option, as the API's ``start=-6h`` is not."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _TIME_OPTIONS and arg[:1] == "-" and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.command
    if command == "run":
        from hub.runtime import run_forever

        return asyncio.run(run_forever(settings))
    if command == "demo":
        from devices.demo import run_demo

        return asyncio.run(run_demo(settings, devices=args.devices, rate=args.rate))
    if command == "simulate":
        from devices.simulator import simulate_main

        return simulate_main(args)
    if command == "rules":
        if args.rules_command == "check":
            return _rules_check(settings, args.paths)
        try:
            start_ms, end_ms = backtest_range(args.start, args.end, now_ms=_now_ms())
        except ValueError as exc:
            print(f"hub rules backtest: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(_backtest(settings, args.path, start_ms, end_ms, as_json=args.json))
    if command == "keys":
        from hub.api.keys_cli import keys_command

        return keys_command(settings, args)
    if command == "devices":
        from hub.registry.cli import devices_command

        return devices_command(settings, args)
    if command == "indicators":
        from hub.indicators.cli import indicators_command

        return indicators_command(settings, args)
    if command == "audit":
        from hub.api.audit_cli import audit_command

        return audit_command(settings, args)
    if command == "reports":
        return _reports_erase(settings, args.email)
    raise AssertionError(f"unhandled command {command}")


def _reports_erase(settings: Settings, email: str) -> int:
    """`hub reports erase --email`: delete that reporter's contact data, and say so in the
    audit log (which keeps the count, not the address)."""
    import getpass

    from hub.api.audit import AuditEntry, chain_key, ensure_schema, record
    from hub.reports import SqliteReportStore
    from hub.sqlite import STATE_DB, connect

    if "@" not in email or len(email) > 254:
        print(f"hub reports erase: {email[:80]!r} is not an e-mail address", file=sys.stderr)
        return 2
    conn = connect(settings.data_dir / STATE_DB)
    try:
        ensure_schema(conn)
        erased = SqliteReportStore(conn).erase_contacts(email)
        record(
            conn,
            AuditEntry(
                ts_ms=_now_ms(),
                key_id=None,
                key_name=f"cli:{getpass.getuser()}",
                role=None,
                client="local",
                method="ERASE",
                path="hub reports erase",
                query="email=***",
                status=0,
                rows=erased,
                resource="reports",
            ),
            chain_key(
                secret.get_secret_value() if (secret := settings.audit.chain_key) else None,
                settings.data_dir,
            ),
        )
    finally:
        conn.close()
    print(f"erased the contact data of {erased} report(s)")
    return 0


def _rules_check(settings: Settings, paths: list[Path]) -> int:
    """`hub rules check`: rule files and alert routing files; exit 1 on any problem.

    With PATHs: those rule files and folders, plus every ``routes.yaml`` named or
    inside them (and the configured routing file, under any name, if named). Without:
    HUB_RULES__PATHS and the configured routing file (HUB_ALERTS__ROUTES_PATH).
    """
    from hub.indicators.definitions import check_command_problems
    from hub.responders import check_routes
    from hub.rules.loader import check_command, indicator_paths, routes_files

    configured = Path(settings.alerts.routes_path)

    def is_configured(p: Path) -> bool:
        return configured.exists() and p.exists() and p.resolve() == configured.resolve()

    if paths:
        rule_paths = [p for p in paths if not is_configured(p)]
        routes = routes_files(paths) + [p for p in paths if is_configured(p)]
        indicators = indicator_paths(paths)
    else:
        indicators = [Path(p) for p in settings.indicators.paths if Path(p).exists()]
        if not indicators:
            print(
                f"note: no indicator definitions at {', '.join(settings.indicators.paths)}"
                " (HUB_INDICATORS__PATHS): the hub uses the shipped ones",
                file=sys.stderr,
            )
        rule_paths = [Path(p) for p in settings.rules.paths]
        routes = [*routes_files(rule_paths), configured]
        if not configured.exists():
            routes.pop()
            print(
                f"note: no routing file at {configured} (HUB_ALERTS__ROUTES_PATH):"
                " every alert goes to MQTT only",
                file=sys.stderr,
            )
    unique: dict[Path, Path] = {}
    for p in routes:
        unique.setdefault(p.resolve(), p)
    return check_command(
        rule_paths,
        routes=list(unique.values()),
        check_routes=check_routes,
        indicators=indicators,
        check_indicators=check_command_problems,
    )


def backtest_range(start: str, end: str, *, now_ms: int) -> tuple[int, int]:
    """``--start`` and ``--end`` in epoch ms, read as the telemetry API reads ``start``
    and ``end``: epoch ms, RFC 3339 with offset, ``now`` or relative to now (``-6h``)."""
    from hub.durations import parse_instant_ms

    try:
        start_ms = parse_instant_ms(start, now_ms)
    except ValueError as exc:
        raise ValueError(f"--start: {exc}") from None
    try:
        end_ms = parse_instant_ms(end, now_ms)
    except ValueError as exc:
        raise ValueError(f"--end: {exc}") from None
    if end_ms <= start_ms:
        raise ValueError("--end must be after --start")
    return start_ms, end_ms


def _now_ms() -> int:
    from hub.clock import SystemClock

    return SystemClock().now_ms()


async def _backtest(
    settings: Settings, path: Path, start_ms: int, end_ms: int, *, as_json: bool
) -> int:
    """Replay stored history (embedded or InfluxDB, as configured) through ``path``'s rules."""
    from hub.clock import SystemClock
    from hub.rules.backtest import backtest_command
    from hub.store.base import StoreUnavailable
    from hub.store.factory import make_store

    store = make_store(settings, SystemClock())
    try:
        await store.open()
    except StoreUnavailable as exc:
        print(f"hub rules backtest: store unavailable: {exc}", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        try:
            history = store.history(start_ms, end_ms)
            return await backtest_command(
                path,
                history,
                start_ms,
                end_ms,
                as_json=as_json,
                out=sys.stdout,
                device_labels=_registry_labels(settings, stack),
            )
        finally:
            await store.close()


def _registry_labels(
    settings: Settings, stack: contextlib.ExitStack
) -> Callable[[str], Mapping[str, str]] | None:
    """Device labels from the hub's registry, for ``match.labels`` (None: no hub data here)."""
    from hub.clock import SystemClock
    from hub.registry.registry import Registry
    from hub.sqlite import STATE_DB, connect

    db = settings.data_dir / STATE_DB
    if not db.exists():
        return None
    conn = stack.enter_context(contextlib.closing(connect(db)))
    return Registry(conn, clock=SystemClock(), expected_interval_s=lambda _asset: None).labels
