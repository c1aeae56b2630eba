"""``hub audit verify``: check the audit log's hash chain (docs/api.md, "Audit log")."""

from __future__ import annotations

import argparse
import contextlib
import sys

from hub.settings import Settings


def audit_command(settings: Settings, args: argparse.Namespace) -> int:
    """``hub audit verify [--head ID:HASH]``: exit 0 with the head to note, or 1 with
    each problem (a changed entry, a deleted one, a head noted earlier gone)."""
    from hub.api.audit import chain_key, ensure_schema, verify
    from hub.sqlite import STATE_DB, connect

    head: tuple[int, str] | None = None
    if args.head is not None:
        entry_id, sep, digest = args.head.partition(":")
        if not sep or not entry_id.isdigit() or len(digest) != 64:
            print(
                "hub audit verify: --head must be ID:HASH as printed by an earlier verify",
                file=sys.stderr,
            )
            return 2
        head = (int(entry_id), digest)
    db = settings.data_dir / STATE_DB
    if not db.exists():
        print(f"hub audit verify: no hub data at {db} (HUB_DATA_DIR)", file=sys.stderr)
        return 1
    secret = settings.audit.chain_key
    key = chain_key(secret.get_secret_value() if secret is not None else None, settings.data_dir)
    with contextlib.closing(connect(db)) as conn:
        ensure_schema(conn)
        found = verify(conn, key, head=head)
    for problem in found.problems:
        print(problem)
    if not found.ok:
        print(f"{len(found.problems)} problem(s): the audit log was tampered with", file=sys.stderr)
        return 1
    note = f"; {found.unchained} older entries predate the chain" if found.unchained else ""
    if found.head_id is None:
        print(f"OK: the audit log is empty{note}")
    else:
        print(
            f"OK: {found.checked} entries, chain intact{note};"
            f" head {found.head_id}:{found.head_hash}"
        )
    return 0
