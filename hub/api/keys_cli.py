"""``hub keys create|list|revoke`` (CONTRACT §4): key administration on the state DB."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from hub.api.keys import KeyRefused, create_key, list_keys, parse_scope_args, revoke_key
from hub.settings import Settings
from hub.sqlite import STATE_DB, connect


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def keys_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``hub keys`` subcommand; return the exit code."""
    conn = connect(settings.data_dir / STATE_DB)
    try:
        if args.keys_command == "create":
            scopes = parse_scope_args(args.scope)
            key = create_key(conn, role=args.role, name=args.name, scopes=scopes)
            where = ", ".join(f"{k}={','.join(v)}" for k, v in scopes.items()) or "everything"
            print(f"Created {args.role} key {args.name!r} (scope: {where}).")
            print("It is shown only this once; store it now:")
            print(key)
            return 0
        if args.keys_command == "list":
            columns = ("id", "role", "state", "created", "last used")
            widths = (9, 12, 8, 21, 21)
            print(
                " ".join(f"{c:<{w}}" for c, w in zip(columns, widths, strict=True)), "name [scope]"
            )
            for item in list_keys(conn):
                scope = " ".join(f"{k}={','.join(v)}" for k, v in item.scopes_dict().items())
                state = "active" if item.active else "revoked"
                print(
                    f"{item.id:<9} {item.role:<12} {state:<8} {_when(item.created_ms):<21} "
                    f"{_when(item.last_used_ms):<21} {item.name}" + (f" [{scope}]" if scope else "")
                )
            return 0
        if args.keys_command == "revoke":
            revoked = revoke_key(conn, args.key)
            print(f"Revoked key {revoked.id} ({revoked.name}).")
            return 0
    except KeyRefused as exc:
        print(f"hub keys {args.keys_command}: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
    raise AssertionError(f"unhandled keys command {args.keys_command}")
