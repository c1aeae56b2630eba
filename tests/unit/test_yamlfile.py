"""One module maps YAML to file:line problems for every file the hub reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.settings import ConfigError, load_settings
from hub.yamlfile import (
    DOTS,
    YamlMap,
    YamlSyntaxError,
    key_path,
    line_of,
    parse_yaml,
    plain,
)

REPO = Path(__file__).resolve().parents[2]


def test_only_yamlfile_reads_yaml() -> None:
    """No module but hub/yamlfile.py imports ruamel.yaml: one place maps YAML to lines."""
    importers = [
        str(path.relative_to(REPO))
        for folder in ("hub", "devices")
        for path in sorted((REPO / folder).rglob("*.py"))
        if re.search(r"^\s*(from|import) ruamel", path.read_text(encoding="utf-8"), re.M)
    ]
    assert importers == ["hub/yamlfile.py"]


def test_lines_and_key_paths_in_both_styles() -> None:
    """A pydantic location maps to the line of its deepest key, in either path style."""
    doc = parse_yaml("route:\n  routes:\n    - match: {}\n      wait: 5s\n")
    loc = ("route", "routes", 0, "wait")
    assert line_of(doc, loc) == 4
    assert key_path(loc, doc) == "route.routes[0].wait"
    assert key_path(loc, doc, DOTS) == "route.routes.0.wait"
    # Parts pydantic adds that are not in the file are skipped, not the end of the walk.
    assert line_of(doc, ("route", "function-after[x]", "routes", 0, "wait")) == 4


def test_syntax_errors_have_a_line() -> None:
    """Broken YAML is a YamlSyntaxError with the line the parser stopped at."""
    with pytest.raises(YamlSyntaxError) as info:
        parse_yaml("a: 1\nb: [2\n")
    assert info.value.line == 3
    assert str(info.value).startswith("YAML syntax error: ")
    with pytest.raises(YamlSyntaxError, match="duplicate key"):
        parse_yaml("a: 1\na: 2\n")


@given(st.text(max_size=120))
def test_parse_yaml_raises_only_syntax_errors(text: str) -> None:
    """Arbitrary text is a document or a YamlSyntaxError with a line, nothing else."""
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError as exc:
        line = exc.line
    else:
        plain(doc)
        line = 1
    assert line >= 1


def test_plain_gives_builtins_and_converts_shared_nodes_once() -> None:
    """Round-trip nodes become dicts/lists/builtins with text keys; an alias stays shared."""
    doc = parse_yaml("a: &x {k: [1, 2.5, true]}\nb: *x\n3: three\n")
    out = plain(doc)
    assert out["a"] == {"k": [1, 2.5, True]}
    assert type(out["a"]["k"][1]) is float
    assert out["b"] is out["a"]
    assert out["3"] == "three"
    assert isinstance(doc, YamlMap)


def test_config_file_problems_name_file_and_line(tmp_path: Path) -> None:
    """`--config` problems say file:line: key.path: message, as every other file does."""
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("data_dir: /srv/hub\napi:\n  host: 0.0.0.0\n  port: -1\nmqtt:\n  nope: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert str(info.value).splitlines() == [
        f"{cfg}:6: mqtt.nope: unknown field",
        f"{cfg}:4: api.port: Input should be greater than or equal to 0",
    ]


def test_config_problem_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad value that came from the environment names its variable, not the file."""
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("api:\n  port: 7000\n")
    monkeypatch.setenv("HUB_API__PORT", "70000")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert str(info.value) == (
        "environment (HUB_API__PORT): api.port: Input should be less than or equal to 65535"
    )


def test_config_syntax_error_has_its_line(tmp_path: Path) -> None:
    """A YAML syntax error in the config file names file and line."""
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("api:\n  port: 7000\nmqtt: [unclosed\n")
    with pytest.raises(ConfigError, match=re.escape(f"{cfg}:4: YAML syntax error")):
        load_settings(cfg)
