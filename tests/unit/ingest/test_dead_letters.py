"""Dead-letter store: bounded, counted, filtered (hub.ports.DeadLetterPort)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hub import metrics
from hub.ingest.dead_letters import DeadLetterStore
from hub.messages import Rejection
from hub.ports import UNRESTRICTED, DeadLetterPort, Scope
from hub.sqlite import connect


def rej(
    i: int, reason: str = "invalid_json", district: str = "d01", device: str = "g1"
) -> Rejection:
    return Rejection(
        topic=f"city/{district}/flood_gauge/{device}/telemetry",
        reason=reason,
        detail=f"problem {i}",
        payload=b"\xff{bad" + str(i).encode(),
        received_ms=1000 + i,
        device_id=device,
        district=district,
    )


def store(tmp_path: Path, capacity: int = 10) -> DeadLetterStore:
    return DeadLetterStore(connect(tmp_path / "hub.db"), capacity)


def test_keeps_newest_first_with_payload_text(tmp_path: Path) -> None:
    """Rejections come back newest first, payload as text (invalid bytes escaped)."""
    s = store(tmp_path)
    s.add([rej(1), rej(2)])
    items = s.recent(reason=None, device_id=None, limit=10, scope=UNRESTRICTED)
    assert [d.detail for d in items] == ["problem 2", "problem 1"]
    assert items[0].payload == "\\xff{bad2"
    assert items[0].topic == "city/d01/flood_gauge/g1/telemetry"


def test_bounded_but_counts_include_everything(tmp_path: Path) -> None:
    """Only the newest `capacity` are kept; counts_by_reason still counts every rejection."""
    s = store(tmp_path, capacity=10)
    s.add([rej(i) for i in range(7)])
    s.add([rej(i, "bad_ts") for i in range(7, 32)])
    items = s.recent(reason=None, device_id=None, limit=100, scope=UNRESTRICTED)
    assert len(items) == 10
    assert items[0].detail == "problem 31"
    assert items[-1].detail == "problem 22"
    assert s.counts_by_reason() == {"bad_ts": 25, "invalid_json": 7}
    assert s.kept_by_reason() == {"bad_ts": 10}
    assert s.evicted == 22


def test_counts_survive_a_restart(tmp_path: Path) -> None:
    """Counts and kept rejections are on disk: a new store on the same DB sees them."""
    store(tmp_path).add([rej(1, "oversize")])
    again = store(tmp_path)
    assert again.counts_by_reason() == {"oversize": 1}
    assert len(again.recent(reason=None, device_id=None, limit=5, scope=UNRESTRICTED)) == 1


def test_filters_by_reason_device_and_scope(tmp_path: Path) -> None:
    """recent() filters by reason, device id and the caller's district / asset type scope."""
    s = store(tmp_path, capacity=100)
    s.add([rej(1, "bad_ts", "d01", "a"), rej(2, "oversize", "d02", "b"), rej(3, "bad_ts", "d02")])

    def details(**kw: object) -> list[str]:
        args: dict[str, object] = {"reason": None, "device_id": None, "limit": 10}
        args["scope"] = UNRESTRICTED
        args.update(kw)
        return [d.detail for d in s.recent(**args)]  # type: ignore[arg-type]

    assert details(reason="bad_ts") == ["problem 3", "problem 1"]
    assert details(device_id="b") == ["problem 2"]
    assert details(scope=Scope(districts=frozenset({"d02"}))) == ["problem 3", "problem 2"]
    assert details(scope=Scope(asset_types=frozenset({"bridge"}))) == []
    assert details(limit=1) == ["problem 3"]


def test_counts_into_prometheus(tmp_path: Path) -> None:
    """Every rejection added increments hub_rejected_total{reason}."""
    before = metrics.REJECTED.labels(reason="bad_seq")._value.get()
    store(tmp_path).add([rej(1, "bad_seq"), rej(2, "bad_seq")])
    assert metrics.REJECTED.labels(reason="bad_seq")._value.get() == before + 2


def test_one_huge_batch_keeps_only_capacity(tmp_path: Path) -> None:
    """A batch larger than capacity keeps its newest `capacity` and counts the rest evicted."""
    s = store(tmp_path, capacity=10)
    s.add([rej(i) for i in range(50)])
    assert s.kept_by_reason() == {"invalid_json": 10}
    assert s.counts_by_reason() == {"invalid_json": 50}
    assert s.evicted == 40


def test_implements_the_port(tmp_path: Path) -> None:
    """DeadLetterStore satisfies hub.ports.DeadLetterPort (checked by mypy through this)."""
    port: DeadLetterPort = store(tmp_path)
    assert port.counts_by_reason() == {}
    assert isinstance(store(tmp_path)._conn, sqlite3.Connection)
