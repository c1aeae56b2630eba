"""The `hub` command line: help written for its users, backtest times, the process umask."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import _parser, backtest_range, main

NOW_MS = 1_764_178_200_000

#: What belongs in the code, not in a user's help: design references and reST markup.
INTERNAL = re.compile(r"CONTRACT|§|``|DESIGN|TODO|hub\.[a-z_]+\.")


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_command_and_option_has_user_help() -> None:
    """`hub --help` and every subcommand's help: a description, help on every option and
    argument (hub simulate's too), and no internal notes."""
    commands = list(_commands(_parser()))
    assert {" ".join(p) for p, _ in commands} >= {
        "",
        "run",
        "demo",
        "simulate",
        "rules check",
        "rules backtest",
        "keys create",
        "keys list",
        "keys revoke",
        "devices import",
        "devices credentials",
    }
    for path, parser in commands:
        where = "hub " + " ".join(path)
        assert parser.description, f"{where} has no description"
        text = parser.format_help()
        assert not INTERNAL.search(text), f"{where} --help shows an internal note:\n{text}"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{where}: command {choice.dest} has no help"
                continue
            name = action.option_strings or action.dest
            assert action.help, f"{where}: {name} has no help"
            assert action.help != argparse.SUPPRESS, f"{where}: {name} is hidden"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("-6h", "-1h", (NOW_MS - 6 * 3_600_000, NOW_MS - 3_600_000)),
        ("-30m", str(NOW_MS), (NOW_MS - 1_800_000, NOW_MS)),
        ("2025-11-26T17:00:00Z", "2025-11-26T18:30:00+01:00", (NOW_MS - 1_800_000, NOW_MS)),
        ("1764178100000", "-1d", None),
    ],
)
def test_backtest_reads_times_as_the_telemetry_api_does(
    start: str, end: str, expected: tuple[int, int] | None
) -> None:
    """--start/--end take epoch ms, RFC 3339 with offset and relative times like -6h,
    the telemetry API's grammar; an end before the start is refused."""
    if expected is None:
        with pytest.raises(ValueError, match="--end must be after --start"):
            backtest_range(start, end, now_ms=NOW_MS)
    else:
        assert backtest_range(start, end, now_ms=NOW_MS) == expected


@pytest.mark.parametrize(
    ("start", "option", "fragment"),
    [
        ("yesterday", "--start", "RFC 3339"),
        ("2025-11-26T17:30:00", "--start", "offset"),
        ("-6x", "--start", "-6x"),
    ],
)
def test_backtest_bad_time_names_the_option(start: str, option: str, fragment: str) -> None:
    """A time the grammar does not read is an error naming the option and the value."""
    with pytest.raises(ValueError, match=option) as caught:
        backtest_range(start, "-1h", now_ms=NOW_MS)
    assert fragment in str(caught.value)


def test_backtest_accepts_relative_times_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub rules backtest PATH --start -2h --end -1h` parses (argparse alone would take
    -2h for an option) and runs over the store."""
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "var"))
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules:\n  - id: r1\n    match: {asset_type: flood_gauge}\n    kind: threshold\n"
        "    metric: water_level_m\n    op: '>'\n    value: 3.0\n    severity: warning\n"
    )
    code = main(["rules", "backtest", str(rules), "--start", "-2h", "--end", "-1h", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "expected one argument" not in captured.err
    assert main(["rules", "backtest", str(rules), "--start", "-1h", "--end", "-2h"]) == 2
    assert "--end must be after --start" in capsys.readouterr().err


def test_hub_makes_what_it_creates_private_and_restores_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hub` runs under umask 077 (files it or its children create are 0600, folders 0700),
    and gives an in-process caller its umask back."""
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "var"))
    before = os.umask(0o022)
    try:
        assert main(["keys", "create", "--role", "viewer", "--name", "umask"]) == 0
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    capsys.readouterr()
    for path in [tmp_path / "var", *(tmp_path / "var").iterdir()]:
        assert path.stat().st_mode & 0o077 == 0, path


def test_simulate_never_prints_the_broker_password(capsys: pytest.CaptureFixture[str]) -> None:
    """`hub simulate` with a bad URL says so without printing the password in it."""
    assert main(["simulate", "--mqtt", "http://sim:s3cret@127.0.0.1:1", "--duration", "0"]) == 2
    err = capsys.readouterr().err
    assert "http://sim:***@127.0.0.1:1" in err
    assert "s3cret" not in err
