"""``hub keys create|list|revoke`` (CONTRACT §4): key administration on the state DB."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from hub.api.keys import KeyRefused, create_key, list_keys, parse_scope_args, revoke_key
from hub.durations import parse_duration_ms, parse_instant_ms
from hub.settings import Settings
from hub.sqlite import STATE_DB, connect


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_ms(text: str, now_ms: int) -> int:
    """``--expires``: a duration from now (``90d``, ``12h``) or an instant (RFC 3339, epoch ms)."""
    try:
        return now_ms + parse_duration_ms(text)
    except ValueError:
        pass
    try:
        return parse_instant_ms(text, now_ms)
    except ValueError:
        raise KeyRefused(
            f"--expires {text!r} is neither a duration (90d, 12h) nor a time (2026-03-01T00:00:00Z)"
        ) from None


def keys_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``hub keys`` subcommand; return the exit code."""
    conn = connect(settings.data_dir / STATE_DB)
    now_ms = time.time_ns() // 1_000_000
    try:
        if args.keys_command == "create":
            scopes = parse_scope_args(args.scope)
            expires = expiry_ms(args.expires, now_ms) if args.expires else None
            key = create_key(
                conn,
                role=args.role,
                name=args.name,
                scopes=scopes,
                now_ms=now_ms,
                expires_ms=expires,
                purpose=args.purpose,
            )
            where = ", ".join(f"{k}={','.join(v)}" for k, v in scopes.items()) or "everything"
            until = f", expires {_when(expires)}" if expires is not None else ""
            print(f"Created {args.role} key {args.name!r} (scope: {where}{until}).")
            print("It is shown only this once; store it now:")
            print(key)
            return 0
        if args.keys_command == "list":
            columns = ("id", "role", "state", "created", "last used", "expires")
            widths = (9, 12, 8, 21, 21, 21)
            print(
                " ".join(f"{c:<{w}}" for c, w in zip(columns, widths, strict=True)),
                "name [scope] (purpose)",
            )
            for item in list_keys(conn):
                scope = " ".join(f"{k}={','.join(v)}" for k, v in item.scopes_dict().items())
                print(
                    f"{item.id:<9} {item.role:<12} {item.state(now_ms):<8} "
                    f"{_when(item.created_ms):<21} {_when(item.last_used_ms):<21} "
                    f"{_when(item.expires_ms):<21} {item.name}"
                    + (f" [{scope}]" if scope else "")
                    + (f" ({item.purpose})" if item.purpose else "")
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
