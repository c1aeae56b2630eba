"""The services file: the shipped one loads; every mistake names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.catalog import load_catalog
from hub.reports import load_services
from hub.rules.loader import expand_paths
from hub.yamlfile import FileProblem

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "rules" / "services.yaml"


def _load(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "services.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileProblem) as caught:
        load_services(path, load_catalog().asset_types())
    return caught.value.messages


def test_shipped_services_cover_the_city_problems_with_catalog_asset_types() -> None:
    """Flooded street, gas smell, open manhole, streetlight out, water leak, bridge damage
    and air pollution are shipped, each mapped to an asset type of the catalog."""
    services = load_services(SHIPPED, load_catalog().asset_types())
    by_code = {s.service_code: s for s in services}
    assert by_code["flooded_street"].asset_type == "flood_gauge"
    assert by_code["gas_smell"].asset_type == "manhole"
    assert {
        "open_manhole",
        "streetlight_out",
        "water_leak",
        "bridge_damage",
        "air_pollution",
    } <= set(by_code)
    strength = by_code["gas_smell"].attributes[0]
    assert (strength.code, strength.datatype, strength.required) == (
        "strength",
        "singlevaluelist",
        True,
    )
    assert [v.key for v in strength.values] == ["faint", "strong", "overwhelming"]


def test_services_file_is_never_taken_for_a_rule_file() -> None:
    """The rule loader skips services.yaml among the rule files."""
    files, _ = expand_paths([REPO / "rules"])
    assert SHIPPED.resolve() not in {f.resolve() for f in files}


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    """A misspelt key is an error at its line, never a silent default."""
    messages = _load(
        tmp_path,
        "services:\n  - service_code: a\n    service_name: A\n    asset_typ: manhole\n",
    )
    assert messages == [f"{tmp_path / 'services.yaml'}:4: services[0].asset_typ: unknown field"]


def test_list_attribute_without_values_is_refused(tmp_path: Path) -> None:
    """A singlevaluelist attribute must list its values."""
    messages = _load(
        tmp_path,
        "services:\n  - service_code: a\n    service_name: A\n    attributes:\n"
        "      - code: x\n        datatype: singlevaluelist\n        description: X?\n",
    )
    assert len(messages) == 1
    assert ":5: services[0].attributes[0]" in messages[0]
    assert "needs values" in messages[0]


def test_duplicate_codes_and_unknown_asset_types_are_refused(tmp_path: Path) -> None:
    """Two services with one code, or an asset type the catalog lacks, are errors."""
    messages = _load(
        tmp_path,
        "services:\n  - service_code: a\n    service_name: A\n"
        "  - service_code: a\n    service_name: B\n    asset_type: pothole\n",
    )
    assert any(":4: services[1].service_code: 'a' is already" in m for m in messages)
    assert any(":6: services[1].asset_type: 'pothole' is not an asset type" in m for m in messages)
