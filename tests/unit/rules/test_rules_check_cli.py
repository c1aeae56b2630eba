"""`hub rules check` validates the alert routing file as well as the rule files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli import main

REPO = Path(__file__).resolve().parents[3]
RULE = """\
rules:
  - id: high
    kind: threshold
    metric: water_level_m
    op: ">"
    value: 3.0
    severity: critical
"""
ROUTES = """\
receivers:
  - name: mqtt
    mqtt: {}
route:
  receivers: [mqtt]
"""
# Line 5: a receiver the route tree names but nobody defined.
BAD_ROUTES = ROUTES.replace("receivers: [mqtt]", "receivers: [nobody]")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with rules/ (one rule, a routing file) and no HUB_ settings."""
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "flood.yaml").write_text(RULE)
    (tmp_path / "rules" / "routes.yaml").write_text(ROUTES)
    return tmp_path


def test_default_paths_check_rules_and_the_routing_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No PATH: the configured rule paths and routing file; both valid is exit 0."""
    assert main(["rules", "check"]) == 0
    assert capsys.readouterr().out == "OK: 1 rules in 1 file(s); routing: rules/routes.yaml\n"


def test_broken_routing_file_fails_with_file_and_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A routing problem is `file:line: message` and exit 1, even when every rule is valid."""
    (workdir / "rules" / "routes.yaml").write_text(BAD_ROUTES)
    assert main(["rules", "check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith("rules/routes.yaml:5: "), out
    assert "nobody" in out[0]


def test_routing_file_elsewhere_is_found_through_the_setting(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HUB_ALERTS__ROUTES_PATH names the routing file, whatever it is called."""
    (workdir / "rules" / "routes.yaml").unlink()
    elsewhere = workdir / "deploy" / "alert-routing.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(BAD_ROUTES)
    monkeypatch.setenv("HUB_ALERTS__ROUTES_PATH", str(elsewhere))
    assert main(["rules", "check"]) == 1
    assert capsys.readouterr().out.startswith(f"{elsewhere}:5: ")
    # Named as a PATH it is checked as a routing file too, not as a rule file.
    assert main(["rules", "check", str(elsewhere)]) == 1
    assert capsys.readouterr().out.startswith(f"{elsewhere}:5: ")


def test_paths_check_the_routes_yaml_they_name_or_contain(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder PATH includes its routes.yaml; a single rule file does not drag it in."""
    (workdir / "rules" / "routes.yaml").write_text(BAD_ROUTES)
    assert main(["rules", "check", "rules"]) == 1
    assert capsys.readouterr().out.startswith("rules/routes.yaml:5: ")
    assert main(["rules", "check", "rules/routes.yaml"]) == 1
    assert capsys.readouterr().out.startswith("rules/routes.yaml:5: ")
    assert main(["rules", "check", "rules/flood.yaml"]) == 0
    assert capsys.readouterr().out == "OK: 1 rules in 1 file(s)\n"


def test_missing_routing_file_is_a_note_not_a_failure(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a routing file the hub runs MQTT-only, so the check passes and says so."""
    (workdir / "rules" / "routes.yaml").unlink()
    assert main(["rules", "check"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "OK: 1 rules in 1 file(s)\n"
    assert "no routing file at rules/routes.yaml" in captured.err


def test_console_command_exit_status(workdir: Path) -> None:
    """`python -m hub rules check` as a process: exit 1 and file:line on stdout."""
    (workdir / "rules" / "routes.yaml").write_text(BAD_ROUTES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "hub", "rules", "check"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    assert done.stdout.startswith("rules/routes.yaml:5: "), done
    assert "1 problem(s)" in done.stderr
