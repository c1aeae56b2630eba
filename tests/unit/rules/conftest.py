"""Fixtures for the rule engine's unit tests (helpers live in rules_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rules_helpers import Driver, rules_from

from hub.rules.engine import RuleEngine


@pytest.fixture
def drive() -> Callable[..., Driver]:
    """Build a Driver from rule-file text."""

    def make(text: str, *, late_tolerance_s: int = 300, interval_s: float | None = 60.0) -> Driver:
        engine = RuleEngine(
            rules_from(text),
            late_tolerance_s=late_tolerance_s,
            expected_interval_s=lambda _asset: interval_s,
        )
        return Driver(engine)

    return make
