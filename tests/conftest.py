"""Shared fixtures: real Mosquitto, InfluxDB and NATS per test session, unique names per test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.clock import FakeClock
from tests.services import InfluxDB1, Mosquitto, NatsCluster, NatsServer


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto shared by the session; tests use unique topics (see `names`)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto for one test, which it may stop, kill and restart."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """An InfluxDB 1.x shared by the session; tests use their own database."""
    server = InfluxDB1(tmp_path_factory.mktemp("influxdb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_influxdb(tmp_path: Path) -> Iterator[InfluxDB1]:
    """An InfluxDB for one test, which it may stop, kill and restart."""
    server = InfluxDB1(tmp_path / "influxdb")
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream nats-server shared by the session; tests use their own streams."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A three-node JetStream cluster for one test, whose nodes it may kill and restart."""
    cluster = NatsCluster(tmp_path / "nats")
    cluster.start()
    yield cluster
    cluster.kill()


class Names:
    """Unique, contract-valid names derived from the test's name."""

    def __init__(self, test_name: str) -> None:
        slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
        self.slug = slug[-40:].lstrip("-_") or "t"

    def topic_prefix(self) -> str:
        """A topic prefix no other test uses."""
        return f"t-{self.slug}"

    def district(self, n: int = 0) -> str:
        """A district name for this test."""
        return f"d{n:02d}"

    def device(self, n: int = 0) -> str:
        """A device id unique to this test."""
        return f"{self.slug[:50]}-{n}"

    def stream(self) -> str:
        """A NATS stream (and subject prefix) name unique to this test."""
        return "s_" + self.slug.replace("-", "_")[-40:]

    def database(self) -> str:
        """An InfluxDB database name unique to this test."""
        return "db_" + self.slug.replace("-", "_")


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    """Names unique to the running test, so tests never collide on shared services."""
    return Names(request.node.name)


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()
