"""Mosquitto password hashes, ACL text and the credentials files."""

from __future__ import annotations

import base64
import csv
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hub.registry.credentials import (
    DeviceAccount,
    acl_text,
    mosquitto_hash,
    write_credentials,
)

DEVICES = [DeviceAccount("fg-1", "d01", "flood_gauge"), DeviceAccount("br-2", "d02", "bridge")]


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd absent")
def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Given mosquitto_passwd's salt, our hash is byte-for-byte the line it wrote."""
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "u", "s3cr3t:é"], check=True)
    line = path.read_text().strip()
    user, hashed = line.split(":", 1)
    _, seven, iterations, salt_b64, _ = hashed.split("$")
    assert (user, seven) == ("u", "7")
    ours = mosquitto_hash("s3cr3t:é", salt=base64.b64decode(salt_b64), iterations=int(iterations))
    assert ours == hashed


def test_acl_lets_each_device_publish_only_its_topics() -> None:
    """The ACL has a block per device with exactly its telemetry and status topics."""
    text = acl_text("city", "hub", DEVICES)
    assert "user hub\ntopic read city/#\ntopic write city/alerts/#\n" in text
    assert (
        "user fg-1\ntopic write city/d01/flood_gauge/fg-1/telemetry\n"
        "topic write city/d01/flood_gauge/fg-1/status\n"
    ) in text
    assert "pattern" not in text
    assert "topic read city/d" not in text


def test_files_are_private_and_passwords_kept_on_rerun(tmp_path: Path) -> None:
    """passwd and credentials.csv are 0600; a second run keeps existing passwords."""
    out = tmp_path / "creds"
    first = write_credentials(out, prefix="city", hub_user="hub", devices=DEVICES[:1])
    assert (first.accounts, first.new_accounts) == (2, 2)
    for name in ("passwd", "credentials.csv"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    before = {
        r["username"]: r["password"] for r in csv.DictReader((out / "credentials.csv").open())
    }
    second = write_credentials(out, prefix="city", hub_user="hub", devices=DEVICES)
    assert second.new_accounts == 1
    after = _passwords(out)
    assert after["fg-1"] == before["fg-1"]
    assert after["hub"] == before["hub"]
    assert len(after["br-2"]) >= 32
    assert len({*after.values()}) == 3
    assert [ln.split(":")[0] for ln in (out / "passwd").read_text().splitlines()] == [
        "hub",
        "br-2",
        "fg-1",
    ]


def _passwords(out: Path) -> dict[str, str]:
    with (out / "credentials.csv").open() as handle:
        return {r["username"]: r["password"] for r in csv.DictReader(handle)}


def test_hub_user_clashing_with_a_device_is_refused(tmp_path: Path) -> None:
    """A hub account named like a device would merge two identities: refused."""
    with pytest.raises(ValueError, match="also a device id"):
        write_credentials(tmp_path, prefix="city", hub_user="fg-1", devices=DEVICES)
    with pytest.raises(ValueError, match="must match"):
        write_credentials(tmp_path, prefix="city", hub_user="bad user", devices=DEVICES)
