"""Broker credentials for provisioned devices: Mosquitto password file, ACL, device secrets.

``hub devices credentials --out DIR`` writes three files:

* ``passwd`` (0600): Mosquitto's password file, one ``user:$7$iterations$salt$hash``
  line per account, PBKDF2-SHA512 exactly as ``mosquitto_passwd`` 2.x writes it;
* ``acl``: each device may publish only to its own telemetry and status topics
  (so its last will is allowed too) and read nothing; the hub account reads
  ``{prefix}/#`` and publishes ``{prefix}/alerts/#``;
* ``credentials.csv`` (0600): the plaintext passwords, to load into the devices.

Running it again keeps the passwords of accounts already in ``credentials.csv``
(devices in the field keep working) and generates them only for new accounts.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hub.messages import DEVICE_ID_RE

#: mosquitto_passwd 2.x defaults: 101 PBKDF2 iterations, 12-byte salt, SHA-512.
#: The passwords here are 192-bit random strings, so a brute force is hopeless
#: whatever the iteration count; a low count keeps 10,000 devices reconnecting
#: at once (after a broker restart) cheap for the broker.
ITERATIONS = 101
SALT_BYTES = 12
PASSWORD_BYTES = 24
CSV_COLUMNS = ("role", "username", "password", "district", "asset_type", "topics")


@dataclass(frozen=True, slots=True)
class DeviceAccount:
    """One device's broker identity: its username is its device id."""

    device_id: str
    district: str
    asset_type: str


@dataclass(frozen=True, slots=True)
class CredentialsReport:
    """Where the files went and how many accounts are new."""

    passwd: Path
    acl: Path
    secrets_csv: Path
    accounts: int
    new_accounts: int


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """The password-file hash Mosquitto 2.x checks: ``$7$iterations$salt_b64$hash_b64``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def device_topics(prefix: str, account: DeviceAccount) -> tuple[str, str]:
    """The telemetry and status topics a device may publish to (CONTRACT §1)."""
    base = f"{prefix}/{account.district}/{account.asset_type}/{account.device_id}"
    return f"{base}/telemetry", f"{base}/status"


def acl_text(prefix: str, hub_user: str, devices: Iterable[DeviceAccount]) -> str:
    """Mosquitto ACL: per-user blocks, so a device can publish only as itself."""
    lines = [
        "# Written by `hub devices credentials`; regenerate rather than edit.",
        "# Nothing is allowed unless listed (Mosquitto denies by default).",
        "",
        f"user {hub_user}",
        f"topic read {prefix}/#",
        f"topic write {prefix}/alerts/#",
    ]
    for account in devices:
        telemetry, status = device_topics(prefix, account)
        lines += ["", f"user {account.device_id}", f"topic write {telemetry}"]
        lines.append(f"topic write {status}")
    return "\n".join(lines) + "\n"


def write_credentials(
    out: Path, *, prefix: str, hub_user: str, devices: Iterable[DeviceAccount]
) -> CredentialsReport:
    """Write ``passwd``, ``acl`` and ``credentials.csv`` into ``out`` (see module doc)."""
    if not DEVICE_ID_RE.fullmatch(hub_user):
        raise ValueError(f"hub user {hub_user!r} must match {DEVICE_ID_RE.pattern}")
    accounts = sorted(devices, key=lambda a: a.device_id)
    if any(a.device_id == hub_user for a in accounts):
        raise ValueError(f"hub user {hub_user!r} is also a device id; choose another name")
    out.mkdir(parents=True, exist_ok=True)
    secrets_csv = out / "credentials.csv"
    known = _known_passwords(secrets_csv)
    new = 0

    def password_for(user: str) -> str:
        nonlocal new
        if user in known:
            return known[user]
        new += 1
        return secrets.token_urlsafe(PASSWORD_BYTES)

    rows: list[tuple[str, str, str, str, str, str]] = [
        ("hub", hub_user, password_for(hub_user), "", "", f"read {prefix}/#")
    ]
    for account in accounts:
        telemetry, status = device_topics(prefix, account)
        rows.append(
            (
                "device",
                account.device_id,
                password_for(account.device_id),
                account.district,
                account.asset_type,
                f"{telemetry} {status}",
            )
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    _write_private(secrets_csv, buffer.getvalue())
    passwd = out / "passwd"
    _write_private(passwd, "".join(f"{r[1]}:{mosquitto_hash(r[2])}\n" for r in rows))
    acl = out / "acl"
    _write_private(acl, acl_text(prefix, hub_user, accounts))
    return CredentialsReport(passwd, acl, secrets_csv, len(rows), new)


def _known_passwords(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return {
        row["username"]: row["password"]
        for row in csv.DictReader(io.StringIO(text))
        if row.get("username") and row.get("password")
    }


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, replacing ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
