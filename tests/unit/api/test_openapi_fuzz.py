"""schemathesis over the whole API, every check, authenticated, in-process (ASGI).

Every operation of /openapi.json is fuzzed through the coverage phase (boundary values,
each constraint broken on purpose, undeclared methods) and the fuzzing phase, and the
stateful phase chains operations through the links schemathesis infers. Every check
runs: no 5xx, responses as documented (status, headers, content type, body schema),
schema-valid requests accepted, schema-violating ones refused, auth enforced, 405 with
the right ``Allow``, no use of a deleted resource. The budget keeps it to a few minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from hub.api.auth import FailedAuthLimiter, Lockout
from hub.api.ratelimit import RateLimiter
from tests.unit.api.conftest import Api, make_api

#: Examples per operation in the fuzzing phase, and steps of the stateful phase.
MAX_EXAMPLES = 40
STATEFUL_EXAMPLES = 50

#: Where a schema-valid request is rightly refused with 422, because validity depends on
#: more than JSON Schema can say; each names what. Every other operation must accept
#: every schema-valid request (401/403/404/409 aside, which depend on keys and state).
SEMANTIC_422 = [
    # a rule is YAML validated by the rule loader, exactly as rule files are
    {"include-path-regex": "^/api/v1/rules", "include-method": ["POST", "PUT"]},
    # start before end, starts/ends relative to the hub's clock, matchers naming labels
    # that loaded rules set: relations between values and with the current state
    {"include-path": "/api/v1/silences", "include-method": "POST"},
    # end after start, range and point count limits: relations between parameters
    {"include-path": "/api/v1/devices/{device_id}/telemetry"},
    # end after start, at most 1100 periods; a drill-down of an indicator with values
    # per device only: relations between parameters and with the definitions
    {"include-path-regex": "^/api/v1/indicators/"},
    # end after start, at most 400 periods
    {"include-path": "/api/v1/audit/report"},
]


def _config(key: str) -> SchemathesisConfig:
    accept_422 = {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
        }
    }
    return SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"HTTPBearer": {"bearer": key}}},
            "checks": {"enabled": True},
            "phases": {
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 6},
            },
            "operations": [{**where, "checks": accept_422} for where in SEMANTIC_422],
        }
    )


@pytest.fixture
def fuzzed_api(tmp_path: Path) -> Iterator[Api]:
    """The API over fakes, with one alert so alert routes have something to find."""
    for api in make_api(tmp_path):
        api.alerts.fire("d03", "flood_gauge", "fg-d03-1")
        api.events.preset = []  # the in-process client waits for a response's end: close streams
        # schemathesis sends many bad keys on purpose; the lockout is tested in test_access.
        unlimited = FailedAuthLimiter(max_failures=10**9)
        api.client.app.state.lockout = Lockout(unlimited, unlimited)  # type: ignore[attr-defined]
        # and as many public requests as it likes: the rate limit is tested in test_sta.py
        api.opendata.limiter = RateLimiter(rate_per_s=1e9, burst=10**9)
        yield api


@pytest.fixture
def api_schema(fuzzed_api: Api) -> Any:
    """The app's own OpenAPI schema, served in-process (ASGI), calling with an admin key."""
    config = _config(fuzzed_api.keys["admin"])
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_api.client.app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, fuzzed_api: Api) -> None:
    """Generated requests (valid and invalid) never get a 5xx, every answer is as documented,
    and the server is exactly as strict as the schema, under every check schemathesis has."""
    case.call_and_validate()


def test_api_workflows_conform_to_the_schema(api_schema: Any, fuzzed_api: Api) -> None:
    """Chains of calls that feed one answer into the next request (create a device, then read,
    change and delete it; fire, then ack, resolve and comment an alert) pass every check,
    including that a deleted resource is gone and a created one is there."""
    api = fuzzed_api
    # Each run starts from the same state, so hypothesis can replay and shrink a failure.
    seeded = (
        dict(api.registry.devices),
        dict(api.alerts.alerts),
        {k: list(v) for k, v in api.alerts.timelines.items()},
        dict(api.rules.rules),
    )

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            api.registry.devices = dict(seeded[0])
            api.alerts.alerts = dict(seeded[1])
            api.alerts.timelines = {k: list(v) for k, v in seeded[2].items()}
            api.alerts.silences = {}
            api.rules.rules = dict(seeded[3])

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
