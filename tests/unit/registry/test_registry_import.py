"""Device import files: CSV and YAML, file:line errors, all-or-nothing."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.clock import FakeClock
from hub.registry.provisioning import parse_import_file
from hub.registry.registry import Registry
from hub.sqlite import connect

INTERVALS = {"flood_gauge": 60.0, "bridge": 60.0}


def registry(tmp_path: Path) -> Registry:
    return Registry(
        connect(tmp_path / "hub.db"), clock=FakeClock(), expected_interval_s=INTERVALS.get
    )


def test_csv_import_provisions_devices(tmp_path: Path) -> None:
    """A valid CSV provisions every row with location, install date and metadata."""
    path = tmp_path / "devices.csv"
    path.write_text(
        "id,asset_type,district,latitude,longitude,install_date,metadata\n"
        'fg-1,flood_gauge,d01,51.5,-0.12,2025-03-14,"{""river"": ""Thames""}"\n'
        "br-1,bridge,d02,,,,\n"
    )
    reg = registry(tmp_path)
    report = reg.import_file(path)
    assert report.ok
    assert (report.created, report.updated) == (2, 0)
    fg = reg.get_device("fg-1")
    assert fg is not None
    assert fg.provisioned
    assert fg.metadata == {"river": "Thames", "install_date": "2025-03-14"}
    assert reg.location("fg-1") == (51.5, -0.12)
    assert reg.location("br-1") is None
    assert reg.import_file(path).updated == 2


def test_yaml_import_with_devices_key(tmp_path: Path) -> None:
    """A YAML file with a `devices` list provisions its devices; dates may be YAML dates."""
    path = tmp_path / "devices.yaml"
    path.write_text(
        "devices:\n"
        "  - id: fg-9\n"
        "    asset_type: flood_gauge\n"
        "    district: d05\n"
        "    latitude: 1.5\n"
        "    longitude: 2.5\n"
        "    install_date: 2024-01-02\n"
        "    metadata: {owner: water}\n"
    )
    reg = registry(tmp_path)
    assert reg.import_file(path).created == 1
    info = reg.get_device("fg-9")
    assert info is not None
    assert info.metadata == {"owner": "water", "install_date": "2024-01-02"}


def test_csv_errors_name_file_and_line_and_import_nothing(tmp_path: Path) -> None:
    """Every bad row is reported as file:line: message and no row is imported."""
    path = tmp_path / "bad.csv"
    path.write_text(
        "id,asset_type,district,latitude,longitude,install_date,metadata\n"
        "ok-1,flood_gauge,d01,,,,\n"
        "bad id,flood_gauge,d01,,,,\n"
        "ok-2,flod_gauge,d01,,,,\n"
        "ok-3,bridge,d01,95,0,,\n"
        "ok-4,bridge,d01,1,,,\n"
        "ok-5,bridge,d01,,,2025-13-01,\n"
        "ok-6,bridge,d01,,,,not json\n"
        "ok-1,bridge,d01,,,,\n"
    )
    reg = registry(tmp_path)
    report = reg.import_file(path)
    assert not report.ok
    text = "\n".join(report.problems)
    for line, fragment in [
        (3, "id: 'bad id'"),
        (4, "not in the device catalog"),
        (5, "latitude"),
        (6, "give both or neither"),
        (7, "install_date"),
        (8, "metadata is not a JSON object"),
        (9, "duplicate id 'ok-1' (first on line 2)"),
    ]:
        assert f"{path}:{line}: " in text, (line, text)
        assert fragment in text, (fragment, text)
    assert len(reg) == 0


def test_unknown_column_and_yaml_key_are_errors(tmp_path: Path) -> None:
    """Unknown CSV columns and YAML keys are errors with their line, not silently ignored."""
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("id,asset_type,district,colour\nx,bridge,d01,red\n")
    assert parse_import_file(csv_path).problems[0].startswith(f"{csv_path}:1: unknown column")
    yaml_path = tmp_path / "x.yaml"
    yaml_path.write_text("- id: x\n  asset_type: bridge\n  district: d01\n  colour: red\n")
    assert parse_import_file(yaml_path).problems == [
        f"{yaml_path}:4: unknown key 'colour'; allowed: id, asset_type, district, latitude, "
        "longitude, install_date, metadata"
    ]


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported at its line."""
    path = tmp_path / "broken.yaml"
    path.write_text("- id: a\n  asset_type: bridge\n  district: [d01\n")
    problems = parse_import_file(path).problems
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:")


def test_unknown_extension_and_empty_file(tmp_path: Path) -> None:
    """Unsupported file types and files without devices are errors."""
    txt = tmp_path / "devices.txt"
    txt.write_text("x")
    assert "unknown file type" in parse_import_file(txt).problems[0]
    empty = tmp_path / "empty.csv"
    empty.write_text("id,asset_type,district\n")
    assert "no devices" in parse_import_file(empty).problems[0]


_FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(body=st.text(max_size=400))
def test_any_yaml_text_gives_rows_or_problems_never_raises(tmp_path: Path, body: str) -> None:
    """Arbitrary text as a YAML import never raises; every problem names the file and a line."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(body, encoding="utf-8")
    parsed = parse_import_file(path)
    for problem in parsed.problems:
        assert problem.startswith(f"{path}:")
        assert problem.split(":")[1].isdigit()


@_FUZZ
@given(body=st.text(max_size=400))
def test_any_csv_text_gives_rows_or_problems_never_raises(tmp_path: Path, body: str) -> None:
    """Arbitrary text as a CSV import never raises; every problem names the file and a line."""
    path = tmp_path / "fuzz.csv"
    path.write_text(body, encoding="utf-8")
    parsed = parse_import_file(path)
    assert parsed.rows or parsed.problems
    for problem in parsed.problems:
        assert problem.startswith(f"{path}:")
