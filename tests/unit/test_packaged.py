"""The rule packs and routes ship inside the package (hub.packaged, pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hub import packaged
from hub.rules.loader import expand_paths

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_puts_rules_where_the_package_looks_for_them() -> None:
    """pyproject.toml maps the source tree's rules/ to the folder hub.packaged reads in
    an installed wheel, and nothing else of rules/ is left out of the selection."""
    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]
    assert "rules" in wheel["only-include"]
    target = wheel["sources"]["rules"]
    assert REPO / target == REPO / "hub" / packaged._WHEEL_DIR.name
    assert Path(target).parent.name == "hub"


def test_shipped_rules_are_found_from_a_checkout() -> None:
    """From the source tree (or an editable install), the rules/ folder is used, and it
    holds rule packs and the routing file."""
    found = packaged.rule_packs_dir()
    assert found == REPO / "rules"
    files, problems = expand_paths([found])
    assert problems == []
    assert len(files) >= 7
    assert (found / "routes.yaml").is_file()


def test_an_installed_wheel_uses_its_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed from a wheel, the copy inside the package wins; none at all is None."""
    wheel_dir = tmp_path / "hub" / "rule_packs"
    wheel_dir.mkdir(parents=True)
    (wheel_dir / "routes.yaml").write_text("route: {receiver: mqtt}\n")
    monkeypatch.setattr(packaged, "_WHEEL_DIR", wheel_dir)
    assert packaged.rule_packs_dir() == wheel_dir
    monkeypatch.setattr(packaged, "_SOURCE_DIR", tmp_path / "nothing")
    monkeypatch.setattr(packaged, "_WHEEL_DIR", tmp_path / "nothing-either")
    assert packaged.rule_packs_dir() is None
