"""Fixtures for the rule engine's unit tests (helpers live in rules_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rules_helpers import Driver, make_driver


@pytest.fixture
def drive() -> Callable[..., Driver]:
    """Build a Driver from rule-file text."""
    return make_driver
