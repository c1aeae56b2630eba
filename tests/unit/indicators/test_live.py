"""The indicators of a running hub: definition files read again when they change, every
change in the rule change log, the shipped definitions when none are configured."""

from __future__ import annotations

import shutil
from pathlib import Path

from hub.catalog import load_catalog
from hub.clock import FakeClock
from hub.indicators.live import Indicators
from hub.settings import IndicatorsSettings

REPO = Path(__file__).resolve().parents[3]


def test_an_edited_definition_is_used_and_recorded_with_its_diff(tmp_path: Path) -> None:
    """Changing a target reloads the definitions and logs which ids changed, with the diff;
    a broken edit keeps the previous definitions and logs nothing."""
    folder = tmp_path / "indicators"
    shutil.copytree(REPO / "rules" / "indicators", folder)
    changes: list[tuple[str, str, str, Path, str, str]] = []
    ind = Indicators(
        IndicatorsSettings(paths=[str(folder)]),
        load_catalog(),
        tmp_path / "hub.db",
        clock=FakeClock(),
        responses=None,
        record_change=lambda *args: changes.append(args),
    )
    assert ind.service.definition("data_completeness_pct").target == 98  # type: ignore[union-attr]
    assert ind.reload_if_changed() is False
    path = folder / "data_quality.yaml"
    path.write_text(path.read_text().replace("target: 98\n", "target: 99\n"))
    assert ind.reload_if_changed() is True
    assert ind.service.definition("data_completeness_pct").target == 99  # type: ignore[union-attr]
    [(actor, ids, action, file, before, after)] = changes
    assert (actor, ids, action, file) == (
        "file",
        "data_completeness_pct",
        "indicator-file-edit",
        path.resolve(),
    )
    assert "target: 98" in before
    assert "target: 99" in after
    path.write_text(path.read_text().replace("target: 99\n", "target: lots\n"))
    assert ind.reload_if_changed() is False
    assert ind.problems
    assert ind.service.definition("data_completeness_pct").target == 99  # type: ignore[union-attr]
    assert len(changes) == 1
    ind.close()


def test_without_configured_files_the_shipped_definitions_are_used(tmp_path: Path) -> None:
    """A missing HUB_INDICATORS__PATHS folder falls back to the definitions shipped with the hub."""
    ind = Indicators(
        IndicatorsSettings(paths=[str(tmp_path / "nowhere")]),
        load_catalog(),
        tmp_path / "hub.db",
        clock=FakeClock(),
        responses=None,
    )
    assert ind.service.definition("ack_within_target_pct") is not None
    assert ind.health()["definitions"] == 19
    ind.close()
