"""The ``hub`` command (CONTRACT §4): builds settings, then hands over to one job.

Each subcommand imports what it needs lazily so ``hub rules check`` does not pay
for the web stack, and a missing optional piece fails only its own command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from hub.settings import ConfigError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML settings file (environment wins)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the service: ingest, store, rules, alerts, API")
    run.add_argument("--config", type=Path, dest="config_sub", help=argparse.SUPPRESS)

    demo = sub.add_parser("demo", help="run on embedded defaults with a simulated fleet")
    demo.add_argument("--config", type=Path, dest="config_sub", help=argparse.SUPPRESS)
    demo.add_argument("--devices", type=int, default=320, help="simulated devices (>= 300)")
    demo.add_argument("--rate", type=float, default=None, help="readings per second in all")

    sim = sub.add_parser("simulate", help="field-sensor fleet simulator")
    sim.add_argument("--mqtt", required=True, help="broker URL, mqtt://host:port")
    sim.add_argument("--devices", type=int, default=100)
    sim.add_argument("--rate", type=float, default=10.0, help="readings per second in all")
    sim.add_argument("--scenario", default=None, help="scenario name or YAML file")
    sim.add_argument("--prefix", default="city", help="topic prefix")
    sim.add_argument("--senml", action="store_true", help="publish SenML payloads")
    sim.add_argument("--malformed", type=float, default=0.0, help="share of malformed messages")
    sim.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sim.add_argument("--districts", type=int, default=6)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--processes", type=int, default=1, help="publisher processes")

    rules = sub.add_parser("rules", help="rule files: check and backtest")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rule files; exit 1 on any problem")
    check.add_argument("paths", nargs="*", type=Path)
    backtest = rules_sub.add_parser("backtest", help="replay stored history through rules")
    backtest.add_argument("path", type=Path)
    backtest.add_argument("--start", required=True, help="RFC 3339 time or epoch ms")
    backtest.add_argument("--end", required=True, help="RFC 3339 time or epoch ms")
    backtest.add_argument("--json", action="store_true", help="JSON output")

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; printed once, stored hashed")
    create.add_argument(
        "--role", required=True, choices=["viewer", "operator", "rule_author", "admin"]
    )
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope", action="append", default=[], help="district=d01 or asset_type=manhole"
    )
    keys_sub.add_parser("list", help="list keys (never the secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("key")

    devices = sub.add_parser("devices", help="device provisioning and broker credentials")
    dev_sub = devices.add_subparsers(dest="devices_command", required=True)
    imp = dev_sub.add_parser("import", help="import devices from CSV or YAML")
    imp.add_argument("file", type=Path)
    cred = dev_sub.add_parser("credentials", help="Mosquitto password file and ACL")
    cred.add_argument("--out", type=Path, default=Path("deploy/mosquitto/generated"))
    cred.add_argument("--hub-user", default="hub")

    ind = sub.add_parser("indicators", help="the city's indicators: report and rebuild")
    ind_sub = ind.add_subparsers(dest="indicators_command", required=True)
    report = ind_sub.add_parser("report", help="indicator report per district, HTML or CSV")
    report.add_argument("--period", required=True, choices=["day", "week", "month"])
    report.add_argument("--start", required=True, help="RFC 3339 time, epoch ms or like -90d")
    report.add_argument("--end", required=True, help="RFC 3339 time, epoch ms, now or like -1d")
    report.add_argument("--district", default=None, help="one district (default: all)")
    report.add_argument("--out", required=True, type=Path, help="FILE.csv or FILE.html")
    rebuild = ind_sub.add_parser("rebuild", help="recompute roll-ups from stored history")
    rebuild.add_argument("--start", required=True, help="RFC 3339 time, epoch ms or like -30d")
    rebuild.add_argument("--end", default=None, help="default: now")

    aud = sub.add_parser("audit", help="the audit log")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    ver = aud_sub.add_parser("verify", help="check the hash chain; exit 1 if tampered with")
    ver.add_argument("--head", default=None, help="ID:HASH printed by an earlier verify")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hub`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
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
            start_ms, end_ms = parse_time(args.start), parse_time(args.end)
        except ValueError as exc:
            print(f"hub rules backtest: {exc}", file=sys.stderr)
            return 2
        if end_ms <= start_ms:
            print("hub rules backtest: --end must be after --start", file=sys.stderr)
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
    raise AssertionError(f"unhandled command {command}")


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


def parse_time(text: str) -> int:
    """Epoch milliseconds from an RFC 3339 time (offset required) or an integer of ms."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither RFC 3339 (with offset) nor epoch ms") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add Z or +hh:mm")
    return int(parsed.timestamp() * 1000)


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
