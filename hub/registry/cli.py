"""``hub devices import FILE`` and ``hub devices credentials --out DIR --hub-user NAME``."""

from __future__ import annotations

import argparse
import sys

from hub.clock import SystemClock
from hub.registry.credentials import DeviceAccount, write_credentials
from hub.registry.registry import Registry
from hub.settings import Settings
from hub.sqlite import STATE_DB, connect


def devices_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``hub devices`` subcommand; return the exit code."""
    from hub.catalog import load_catalog

    conn = connect(settings.data_dir / STATE_DB)
    try:
        registry = Registry(
            conn, clock=SystemClock(), expected_interval_s=load_catalog().expected_interval_s
        )
        if args.devices_command == "import":
            return _import(registry, args)
        if args.devices_command == "credentials":
            return _credentials(registry, settings, args)
    finally:
        conn.close()
    raise AssertionError(f"unhandled devices command {args.devices_command}")


def _import(registry: Registry, args: argparse.Namespace) -> int:
    report = registry.import_file(args.file)
    if not report.ok:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        print(
            f"hub devices import: {len(report.problems)} problem(s); nothing imported",
            file=sys.stderr,
        )
        return 1
    print(f"{args.file}: {report.created} device(s) added, {report.updated} updated")
    return 0


def _credentials(registry: Registry, settings: Settings, args: argparse.Namespace) -> int:
    from hub.ports import UNRESTRICTED, DeviceFilter

    devices = [
        DeviceAccount(d.device_id, d.district, d.asset_type)
        for d in registry.list_devices(DeviceFilter(limit=10**9), UNRESTRICTED)
        if d.provisioned
    ]
    if not devices:
        print(
            "hub devices credentials: no provisioned devices; run `hub devices import FILE` first",
            file=sys.stderr,
        )
        return 1
    try:
        report = write_credentials(
            args.out, prefix=settings.mqtt.topic_prefix, hub_user=args.hub_user, devices=devices
        )
    except (OSError, ValueError) as exc:
        print(f"hub devices credentials: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.accounts} account(s) ({report.new_accounts} new): "
        f"password file {report.passwd}, ACL {report.acl}, "
        f"device secrets {report.secrets_csv} (keep it private)"
    )
    return 0
