"""API keys: high-entropy bearer tokens, stored hashed, shown once.

A key reads ``hub_<id>_<secret>``: ``id`` (8 hex digits) is public and finds the
row in one indexed lookup; ``secret`` is ``secrets.token_urlsafe(32)`` (256 bits).
Only ``sha256(secret)`` is stored. A slow password hash (argon2) protects
*low-entropy* secrets against offline guessing; a 256-bit random secret cannot be
guessed either way, so a fast hash loses nothing and keeps per-request
verification in microseconds instead of tens of milliseconds of CPU per call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hub.messages import ASSET_TYPE_RE, DISTRICT_RE
from hub.ports import Scope
from hub.sqlite import migrate

#: Roles in increasing order of power (CONTRACT §6).
ROLES: tuple[str, ...] = ("viewer", "operator", "rule_author", "admin")
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}

KEY_PREFIX = "hub"
_KEY_RE = re.compile(r"hub_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        scopes TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER,
        revoked_ms INTEGER
    );
    CREATE INDEX api_keys_name ON api_keys (name);
    """,
)

# Scope kinds as given on the command line (singular) or in code (plural).
_SCOPE_KINDS = {
    "district": "districts",
    "districts": "districts",
    "asset_type": "asset_types",
    "asset_types": "asset_types",
}


class KeyRefused(Exception):
    """A key operation was refused; the message says why."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    name: str
    role: str
    scope: Scope
    created_ms: int
    last_used_ms: int | None
    revoked_ms: int | None

    @property
    def active(self) -> bool:
        """True until revoked."""
        return self.revoked_ms is None

    def scopes_dict(self) -> dict[str, list[str]]:
        """The scope as a JSON-friendly mapping (absent kind = everything)."""
        out: dict[str, list[str]] = {}
        if self.scope.districts is not None:
            out["districts"] = sorted(self.scope.districts)
        if self.scope.asset_types is not None:
            out["asset_types"] = sorted(self.scope.asset_types)
        return out


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the key table."""
    migrate(conn, "api_keys", MIGRATIONS)


def _now(now_ms: int | None) -> int:
    return now_ms if now_ms is not None else time.time_ns() // 1_000_000


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def normalise_scopes(scopes: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """Validate scope names and fold ``district``/``asset_type`` into plural kinds."""
    out: dict[str, set[str]] = {}
    for kind, given in (scopes or {}).items():
        plural = _SCOPE_KINDS.get(kind)
        if plural is None:
            raise KeyRefused(f"unknown scope kind {kind!r}; use district or asset_type")
        values = [given] if isinstance(given, str) else list(given)
        pattern = DISTRICT_RE if plural == "districts" else ASSET_TYPE_RE
        for value in values:
            if not pattern.fullmatch(value):
                raise KeyRefused(f"{kind} {value!r} is not a valid name")
            out.setdefault(plural, set()).add(value)
    return {kind: sorted(values) for kind, values in out.items()}


def parse_scope_args(pairs: Sequence[str]) -> dict[str, list[str]]:
    """``["district=d01", "asset_type=manhole"]`` (CLI form) as a scope mapping."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        kind, sep, value = pair.partition("=")
        if not sep or not value:
            raise KeyRefused(f"scope {pair!r} must look like district=d01 or asset_type=manhole")
        for item in value.split(","):
            out.setdefault(kind.strip(), []).append(item.strip())
    return normalise_scopes(out)


def _scope(stored: str) -> Scope:
    data = json.loads(stored)
    districts = data.get("districts")
    asset_types = data.get("asset_types")
    return Scope(
        districts=frozenset(districts) if districts is not None else None,
        asset_types=frozenset(asset_types) if asset_types is not None else None,
    )


def _row_to_key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        scope=_scope(row["scopes"]),
        created_ms=row["created_ms"],
        last_used_ms=row["last_used_ms"],
        revoked_ms=row["revoked_ms"],
    )


def create_key(
    conn: sqlite3.Connection,
    *,
    role: str,
    name: str,
    scopes: Mapping[str, Sequence[str]] | None = None,
    now_ms: int | None = None,
) -> str:
    """Store a new key and return its plaintext (the only time it is ever seen).

    Refused (:class:`KeyRefused`) when an active key already has this name: names are
    how operators tell keys apart in the audit log and revoke them.
    """
    if role not in ROLE_RANK:
        raise KeyRefused(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > 128:
        raise KeyRefused("a key needs a name of 1 to 128 characters")
    normalised = normalise_scopes(scopes)
    ensure_schema(conn)
    # The check and the insert in one write transaction: two creations racing for one
    # name (two terminals, two API calls) cannot both pass the check.
    own_transaction = not conn.in_transaction
    if own_transaction:
        conn.execute("BEGIN IMMEDIATE")
    try:
        _refuse_taken_name(conn, name)
        while True:
            key_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, name, role, scopes, secret_sha256, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key_id, name, role, json.dumps(normalised), _hash(secret), _now(now_ms)),
                )
            except sqlite3.IntegrityError:
                continue  # id collision (1 in 4 billion): draw again
            break
    except BaseException:
        if own_transaction:
            conn.execute("ROLLBACK")
        raise
    if own_transaction:
        conn.execute("COMMIT")
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def _refuse_taken_name(conn: sqlite3.Connection, name: str) -> None:
    same = conn.execute(
        "SELECT id FROM api_keys WHERE name = ? AND revoked_ms IS NULL", (name,)
    ).fetchone()
    if same is not None:
        raise KeyRefused(
            f"an active key is already named {name!r} (id {same['id']}); choose another "
            "name, or revoke that key first"
        )


def list_keys(conn: sqlite3.Connection, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key (never the secrets), oldest first."""
    ensure_schema(conn)
    sql = "SELECT * FROM api_keys"
    if not include_revoked:
        sql += " WHERE revoked_ms IS NULL"
    return [_row_to_key(row) for row in conn.execute(sql + " ORDER BY created_ms, id")]


def revoke_key(conn: sqlite3.Connection, key: str, *, now_ms: int | None = None) -> ApiKey:
    """Revoke the active key with id (or unique name) ``key``; return it as it was."""
    ensure_schema(conn)
    match = _KEY_RE.fullmatch(key)
    key_id = match.group(1) if match else key
    rows = conn.execute(
        "SELECT * FROM api_keys WHERE id = ? AND revoked_ms IS NULL", (key_id,)
    ).fetchall()
    if not rows:
        rows = conn.execute(
            "SELECT * FROM api_keys WHERE name = ? AND revoked_ms IS NULL", (key,)
        ).fetchall()
    if not rows:
        raise KeyRefused(f"no active key with id or name {key!r}")
    if len(rows) > 1:
        ids = ", ".join(row["id"] for row in rows)
        raise KeyRefused(f"{len(rows)} active keys are named {key!r} ({ids}); revoke by id")
    conn.execute("UPDATE api_keys SET revoked_ms = ? WHERE id = ?", (_now(now_ms), rows[0]["id"]))
    return _row_to_key(rows[0])


def verify_key(conn: sqlite3.Connection, presented: str) -> ApiKey | None:
    """The active key ``presented`` is, or None (malformed, unknown, revoked, wrong secret)."""
    match = _KEY_RE.fullmatch(presented)
    if match is None:
        return None
    key_id, secret = match.groups()
    row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        # Hash anyway so unknown ids and wrong secrets take the same time.
        _hash(secret)
        return None
    if not hmac.compare_digest(row["secret_sha256"], _hash(secret)) or row["revoked_ms"]:
        return None
    return _row_to_key(row)


def presented_key_id(presented: str) -> str | None:
    """The public id of a well-formed key (right or wrong), or None when it is malformed."""
    match = _KEY_RE.fullmatch(presented)
    return match.group(1) if match else None


def is_active(conn: sqlite3.Connection, key_id: str) -> bool:
    """True while the key ``key_id`` exists and is not revoked (open streams re-check it)."""
    row = conn.execute("SELECT revoked_ms FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return row is not None and row["revoked_ms"] is None


def touch_key(conn: sqlite3.Connection, key_id: str, now_ms: int) -> None:
    """Record that ``key_id`` was used at ``now_ms``."""
    conn.execute("UPDATE api_keys SET last_used_ms = ? WHERE id = ?", (now_ms, key_id))
