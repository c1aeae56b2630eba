"""schemathesis against /openapi.json with an admin key: no 500s, no schema violations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks

from hub.api.auth import FailedAuthLimiter
from tests.unit.api.conftest import Api, make_api


@pytest.fixture
def fuzzed_api(tmp_path: Path) -> Iterator[Api]:
    """The API over fakes, with one alert so alert routes have something to find."""
    for api in make_api(tmp_path):
        api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
        api.events.preset = []  # the in-process client waits for a response's end: close streams
        # schemathesis sends many bad keys on purpose; the limiter is tested in test_access.
        api.client.app.state.limiter = FailedAuthLimiter(max_failures=10**9)  # type: ignore[attr-defined]
        yield api


@pytest.fixture
def api_schema(fuzzed_api: Api) -> Any:
    """The app's own OpenAPI schema, served in-process (ASGI)."""
    # The coverage and stateful phases multiply the cases far past a one-minute budget.
    config = SchemathesisConfig.from_dict(
        {"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}}
    )
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_api.client.app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")

# Heuristic checks that do not fit this API, each for a stated reason:
EXCLUDED = [
    # rule YAML and silence matcher names are validated beyond what JSON Schema can say,
    # so some schema-valid bodies are rightly 422
    checks.positive_data_acceptance,
    # unknown query parameters are ignored, as HTTP APIs conventionally do
    checks.negative_data_rejection,
    # Starlette answers 405 with the methods of the first route matching the path only
    checks.allow_header_conformance,
    checks.unsupported_method,
]


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, fuzzed_api: Api) -> None:
    """Generated requests never get a 500 and every response matches the documented schema."""
    case.call_and_validate(headers=fuzzed_api.auth("admin"), excluded_checks=EXCLUDED)
