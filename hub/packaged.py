"""The rule packs and alert routes shipped with the hub, wherever it is installed.

The top-level ``rules/`` folder of the source tree (one rule pack per asset type,
``routes.yaml``, and the indicator definitions in ``indicators/``) is copied into the
wheel as ``hub/rule_packs/`` (pyproject.toml,
``[tool.hatch.build.targets.wheel.force-include]``). Installed from a wheel, it is
found there; run from a checkout or an editable install, the source tree's
``rules/`` is used. ``hub demo`` falls back to these when the configured
``HUB_RULES__PATHS`` and ``HUB_ALERTS__ROUTES_PATH`` do not exist, so it raises its
scenario's alerts from any working directory; every hub falls back to its
``indicators/`` when ``HUB_INDICATORS__PATHS`` does not exist. The device catalog ships the same
way, as :data:`hub.catalog.DEFAULT_CATALOG_DIR`.
"""

from __future__ import annotations

from pathlib import Path

from hub.rules.loader import ROUTES_FILE

_HERE = Path(__file__).resolve().parent
#: In an installed wheel.
_WHEEL_DIR = _HERE / "rule_packs"
#: In the source tree (a checkout, or an editable install of one).
_SOURCE_DIR = _HERE.parent / "rules"


def rule_packs_dir() -> Path | None:
    """The shipped rule folder, or None if this installation has none."""
    for candidate in (_WHEEL_DIR, _SOURCE_DIR):
        if (candidate / ROUTES_FILE).is_file():
            return candidate
    return None
