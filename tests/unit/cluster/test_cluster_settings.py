"""Cluster-mode settings (CONTRACT §5, §11): the journal backend, NATS, the worker."""

from __future__ import annotations

import os
import socket

import pytest

from hub.settings import ClusterSettings, ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)


def test_single_process_is_the_default() -> None:
    """Without settings the journal is local and no NATS is configured."""
    s = load_settings()
    assert s.journal.backend == "local"
    assert s.nats.url == []
    assert (s.nats.replicas, s.nats.partitions) == (3, 16)
    assert s.cluster.lease_ttl_s == 10.0


@pytest.mark.parametrize(
    ("host", "worker"),
    [("edge-01.city.example", "edge-01"), ("_lab box+2", "lab-box-2"), ("...", "worker")],
)
def test_worker_id_defaults_to_the_host_name(
    monkeypatch: pytest.MonkeyPatch, host: str, worker: str
) -> None:
    """The worker id is the host name's first label, cleaned to the id pattern."""
    monkeypatch.setattr(socket, "gethostname", lambda: host)
    assert ClusterSettings().worker_id == worker


def test_nats_servers_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    """HUB_NATS__URL names every server of the NATS cluster, comma-separated."""
    monkeypatch.setenv("HUB_JOURNAL__BACKEND", "jetstream")
    monkeypatch.setenv("HUB_NATS__URL", "nats://n1:4222, nats://u:pw@n2:4222,tls://n3:4222")
    monkeypatch.setenv("HUB_CLUSTER__WORKER_ID", "worker-2")
    s = load_settings()
    assert s.nats.url == ["nats://n1:4222", "nats://u:pw@n2:4222", "tls://n3:4222"]
    assert s.cluster.worker_id == "worker-2"


def test_jetstream_needs_the_nats_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JetStream journal without HUB_NATS__URL is a clear configuration error."""
    monkeypatch.setenv("HUB_JOURNAL__BACKEND", "jetstream")
    with pytest.raises(ConfigError, match="HUB_NATS__URL"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("nats://hub:s3cret@n1:notaport", "port"),
        ("http://hub:s3cret@n1:4222", "nats://"),
        ("nats://n1:4222,mqtt://hub:s3cret@n2:1", "server 2"),
    ],
)
def test_bad_nats_url_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, url: str, fragment: str
) -> None:
    """A malformed server in HUB_NATS__URL is refused, its password never quoted."""
    monkeypatch.setenv("HUB_NATS__URL", url)
    with pytest.raises(ConfigError, match=r"nats\.url") as caught:
        load_settings()
    assert fragment in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HUB_CLUSTER__WORKER_ID", "has space"),
        ("HUB_CLUSTER__LEASE_TTL_S", "0.5"),
        ("HUB_CLUSTER__INGEST_SLOTS", "0"),
        ("HUB_NATS__PARTITIONS", "0"),
        ("HUB_NATS__REPLICAS", "7"),
        ("HUB_NATS__STREAM", "a.b"),
        ("HUB_JOURNAL__BACKEND", "kafka"),
    ],
)
def test_out_of_range_cluster_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Each cluster setting is checked; a bad one names its variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()
