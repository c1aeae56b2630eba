"""InfluxDB 2.x and 3.x Core wire protocol: exact requests, realistic answers and errors.

InfluxDB 2.x and 3.x are not packaged for Debian, so they cannot run here: this
test serves their HTTP API from a small local server (``http.server`` in a
thread, on a free loopback port) that checks method, path, query parameters,
auth header and line-protocol body exactly as the InfluxDB API reference gives
them, and answers with the status codes and bodies those versions send.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from hub.clock import FakeClock
from hub.messages import Reading
from hub.settings import InfluxSettings
from hub.store.base import Point, StoreUnavailable, TelemetryQuery
from hub.store.influx import InfluxStore

pytestmark = pytest.mark.integration

BASE = 1_764_000_000_000


@dataclass
class Request:
    """One request as the fake server saw it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, Any]


@dataclass
class FakeInflux:
    """A local HTTP server standing in for InfluxDB 2.x / 3.x; ``answer`` decides replies."""

    answer: Callable[[Request], Answer]
    requests: list[Request] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length", 0))
                request = Request(
                    self.command,
                    split.path,
                    {k: v[-1] for k, v in parse_qs(split.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                fake.requests.append(request)
                status, body = fake.answer(request)
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeInflux]:
    """A fake InfluxDB answering 204 to writes until a test says otherwise."""
    server = FakeInflux(answer=lambda r: (204, None))
    server.start()
    yield server
    server.stop()


def _store(fake: FakeInflux, api: str, fake_clock: FakeClock) -> InfluxStore:
    settings = InfluxSettings(
        url=fake.url,
        api=api,  # type: ignore[arg-type]
        database="city",
        org="works",
        token=SecretStr("s3cr3t-token"),
        timeout_s=2,
    )
    return InfluxStore(settings, clock=fake_clock)


READINGS = [
    Reading("d01", "bridge", "br-1", BASE, {"strain_ue": 12.5, "lamp": True}, seq=1),
    Reading("d01", "bridge", "br-1", BASE + 1000, {"strain_ue": 13}, seq=2),
    Reading("d02", "bridge", "br 2", BASE + 2000, {"strain_ue": -1.0}),
]
LINES = [
    "bridge,district=d01,device_id=br-1 strain_ue=12.5,lamp=true,seq=1i 1764000000000",
    "bridge,district=d01,device_id=br-1 strain_ue=13.0,seq=2i 1764000001000",
    "bridge,district=d02,device_id=br\\ 2 strain_ue=-1.0 1764000002000",
]


async def test_v2_write_request_is_exact(fake: FakeInflux, fake_clock: FakeClock) -> None:
    """v2: POST /api/v2/write?org=&bucket=&precision=ms, Token auth, one line per reading."""
    store = _store(fake, "v2", fake_clock)
    try:
        result = await store.write(READINGS)
    finally:
        await store.close()
    assert result.written == 3
    [req] = fake.requests
    assert (req.method, req.path) == ("POST", "/api/v2/write")
    assert req.params == {"org": "works", "bucket": "city", "precision": "ms"}
    assert req.headers["authorization"] == "Token s3cr3t-token"
    assert req.body.decode().split("\n") == LINES


async def test_v3_write_request_is_exact(fake: FakeInflux, fake_clock: FakeClock) -> None:
    """v3: POST /api/v3/write_lp?db=&precision=millisecond with Bearer auth."""
    store = _store(fake, "v3", fake_clock)
    try:
        await store.write(READINGS)
    finally:
        await store.close()
    [req] = fake.requests
    assert (req.method, req.path) == ("POST", "/api/v3/write_lp")
    assert req.params == {"db": "city", "precision": "millisecond"}
    assert req.headers["authorization"] == "Bearer s3cr3t-token"
    assert req.body.decode().split("\n") == LINES


async def test_v2_field_type_conflict_refuses_that_point(
    fake: FakeInflux, fake_clock: FakeClock
) -> None:
    """v2 answers 422 naming the conflicting field: that point is refused, the rest rewritten."""

    def answer(req: Request) -> Answer:
        if b"lamp=true" in req.body:
            return 422, {
                "code": "unprocessable entity",
                "message": "failure writing points to database: partial write: field type "
                'conflict: input field "lamp" on measurement "bridge" is type boolean, '
                "already exists as type float dropped=1",
            }
        return 204, None

    fake.answer = answer
    store = _store(fake, "v2", fake_clock)
    try:
        result = await store.write(READINGS)
    finally:
        await store.close()
    assert [r for r, _ in result.refused] == [READINGS[0]]
    assert "lamp" in result.refused[0][1]
    assert result.written == 2
    assert fake.requests[-1].body.decode().split("\n") == LINES[1:]


async def test_v2_parse_error_names_the_line(fake: FakeInflux, fake_clock: FakeClock) -> None:
    """v2 answers 400 quoting the unparsable line: exactly that reading is refused."""

    def answer(req: Request) -> Answer:
        if LINES[1].encode() in req.body:
            return 400, {
                "code": "invalid",
                "message": f"unable to parse '{LINES[1]}': invalid number",
            }
        return 204, None

    fake.answer = answer
    store = _store(fake, "v2", fake_clock)
    try:
        result = await store.write(READINGS)
    finally:
        await store.close()
    assert [r for r, _ in result.refused] == [READINGS[1]]
    assert "invalid number" in result.refused[0][1]


async def test_v3_partial_write_uses_line_numbers(fake: FakeInflux, fake_clock: FakeClock) -> None:
    """v3 lists rejected lines by number: those are refused, the others rewritten."""

    def answer(req: Request) -> Answer:
        lines = req.body.decode().split("\n")
        if LINES[2] in lines:
            return 400, {
                "error": "partial write of line protocol occurred",
                "data": [
                    {
                        "original_line": LINES[2],
                        "line_number": lines.index(LINES[2]) + 1,
                        "error_message": "invalid column type for column 'strain_ue'",
                    }
                ],
            }
        return 204, None

    fake.answer = answer
    store = _store(fake, "v3", fake_clock)
    try:
        result = await store.write(READINGS)
    finally:
        await store.close()
    assert [r for r, _ in result.refused] == [READINGS[2]]
    assert "invalid column type" in result.refused[0][1]
    assert result.written == 2


async def test_unexplained_400_is_bisected_to_the_bad_point(
    fake: FakeInflux, fake_clock: FakeClock
) -> None:
    """An error that names no line is narrowed down by bisection to the one bad point."""

    def answer(req: Request) -> Answer:
        if b"br\\ 2" in req.body:
            return 400, {"code": "invalid", "message": "something was wrong"}
        return 204, None

    fake.answer = answer
    store = _store(fake, "v2", fake_clock)
    try:
        result = await store.write(READINGS)
    finally:
        await store.close()
    assert [r for r, _ in result.refused] == [READINGS[2]]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, {"code": "unavailable", "message": "service unavailable"}),
        (500, {"error": "engine: cache-max-memory-size exceeded"}),
        (429, {"code": "too many requests", "message": "slow down"}),
        (401, {"code": "unauthorized", "message": "unauthorized access"}),
    ],
)
async def test_server_side_errors_are_unavailable(
    fake: FakeInflux, fake_clock: FakeClock, status: int, body: dict[str, str]
) -> None:
    """5xx, 429 and 401 keep the batch (StoreUnavailable), never refuse its points."""
    fake.answer = lambda r: (status, body)
    store = _store(fake, "v2", fake_clock)
    try:
        with pytest.raises(StoreUnavailable, match=str(status)):
            await store.write(READINGS)
    finally:
        await store.close()


async def test_v2_query_uses_the_v1_compatible_endpoint(
    fake: FakeInflux, fake_clock: FakeClock
) -> None:
    """v2 reads with InfluxQL on /query?db=<bucket>&epoch=ms and Token auth."""

    def answer(req: Request) -> Answer:
        assert req.headers["authorization"] == "Token s3cr3t-token"
        return 200, {
            "results": [
                {
                    "statement_id": 0,
                    "series": [
                        {
                            "name": "bridge",
                            "columns": ["time", "device_id", "district", "seq", "strain_ue"],
                            "values": [
                                [BASE, "br-1", "d01", 1, 12.5],
                                [BASE + 1000, "br-1", "d01", 2, 13],
                            ],
                        }
                    ],
                }
            ]
        }

    fake.answer = answer
    store = _store(fake, "v2", fake_clock)
    try:
        points = await store.query(TelemetryQuery("bridge", "br-1", BASE, BASE + 5000))
    finally:
        await store.close()
    [req] = fake.requests
    assert (req.method, req.path) == ("GET", "/query")
    assert req.params["db"] == "city"
    assert req.params["epoch"] == "ms"
    assert req.params["q"] == (
        'SELECT * FROM "bridge" WHERE "device_id" = \'br-1\' AND time >= 1764000000000ms '
        "AND time < 1764000005000ms ORDER BY time ASC LIMIT 10000"
    )
    assert points == [Point(BASE, "strain_ue", 12.5), Point(BASE + 1000, "strain_ue", 13.0)]


async def test_v3_aggregated_query(fake: FakeInflux, fake_clock: FakeClock) -> None:
    """v3 reads with /api/v3/query_influxql (JSON rows, RFC 3339 times) and Bearer auth."""

    def answer(req: Request) -> Answer:
        assert req.path == "/api/v3/query_influxql"
        assert req.headers["authorization"] == "Bearer s3cr3t-token"
        assert req.params["db"] == "city"
        assert req.params["format"] == "json"
        if req.params["q"].startswith("SHOW FIELD KEYS"):
            return 200, [
                {"iox::measurement": "bridge", "fieldKey": "strain_ue", "fieldType": "float"},
                {"iox::measurement": "bridge", "fieldKey": "lamp", "fieldType": "boolean"},
                {"iox::measurement": "bridge", "fieldKey": "seq", "fieldType": "integer"},
            ]
        assert req.params["q"] == (
            'SELECT mean("strain_ue") AS "strain_ue" FROM "bridge" WHERE "device_id" = \'br-1\' '
            "AND time >= 1764000000000ms AND time < 1764007200000ms "
            "GROUP BY time(3600000ms) fill(none)"
        )
        return 200, [
            {"iox::measurement": "bridge", "time": "2025-11-24T16:00:00", "strain_ue": 12.75},
            {"iox::measurement": "bridge", "time": "2025-11-24T17:00:00Z", "strain_ue": 1.5},
        ]

    fake.answer = answer
    store = _store(fake, "v3", fake_clock)
    try:
        points = await store.query(
            TelemetryQuery("bridge", "br-1", BASE, BASE + 7_200_000, None, 3_600_000, "mean")
        )
    finally:
        await store.close()
    assert points == [Point(BASE, "strain_ue", 12.75), Point(BASE + 3_600_000, "strain_ue", 1.5)]


@pytest.mark.parametrize(("api", "path"), [("v2", "/ping"), ("v3", "/health")])
async def test_open_checks_the_server(
    fake: FakeInflux, fake_clock: FakeClock, api: str, path: str
) -> None:
    """open() asks the version's health endpoint and raises StoreUnavailable on 503."""
    store = _store(fake, api, fake_clock)
    try:
        await store.open()
        assert fake.requests[-1].path == path
        fake.answer = lambda r: (503, {"message": "starting"})
        with pytest.raises(StoreUnavailable):
            await store.open()
    finally:
        await store.close()


async def test_history_shrinks_its_window_when_the_server_truncates(
    fake: FakeInflux, fake_clock: FakeClock
) -> None:
    """An answer marked partial (max-row-limit) is re-read in smaller windows: nothing is lost."""
    import re

    rows = [[BASE + k * 300_000, "br-1", "d01", k, float(k)] for k in range(12)]

    def answer(req: Request) -> Answer:
        q = req.params["q"]
        match = re.search(r"time >= (-?\d+)ms AND time < (\d+)ms", q)
        assert match, q
        start, end = int(match.group(1)), int(match.group(2))
        hits = [r for r in rows if start <= r[0] < end]
        if "LIMIT 1" in q:
            hits = hits[:1]
        elif end - start > 1_200_000:
            hits, partial = hits[:2], True  # the server stops early and says so
            return 200, {
                "results": [
                    {
                        "statement_id": 0,
                        "partial": partial,
                        "series": [
                            {
                                "name": "bridge",
                                "columns": ["time", "device_id", "district", "seq", "strain_ue"],
                                "values": hits,
                            }
                        ],
                    }
                ]
            }
        series = (
            [
                {
                    "name": "bridge",
                    "columns": ["time", "device_id", "district", "seq", "strain_ue"],
                    "values": hits,
                }
            ]
            if hits
            else []
        )
        return 200, {"results": [{"statement_id": 0, "series": series}]}

    fake.answer = answer
    store = _store(fake, "v2", fake_clock)
    try:
        got = [r async for r in store.history(BASE, BASE + 3_600_000, ["bridge"])]
    finally:
        await store.close()
    assert [r.seq for r in got] == list(range(12))
    assert got[3] == Reading("d01", "bridge", "br-1", BASE + 900_000, {"strain_ue": 3.0}, seq=3)


async def test_v1_credentials_use_basic_auth(fake: FakeInflux, fake_clock: FakeClock) -> None:
    """v1 with a username: basic auth on /write?db=&precision=ms and CREATE DATABASE on open."""
    import base64

    fake.answer = lambda r: (
        (200, {"results": [{"statement_id": 0}]}) if r.path == "/query" else (204, None)
    )
    settings = InfluxSettings(
        url=fake.url, api="v1", database="city", username="hub", password=SecretStr("pw-1")
    )
    store = InfluxStore(settings, clock=fake_clock)
    try:
        await store.open()
        await store.write(READINGS[:1])
    finally:
        await store.close()
    ping, create, write = fake.requests
    expected = "Basic " + base64.b64encode(b"hub:pw-1").decode()
    assert ping.path == "/ping"
    assert (create.method, create.path, create.params["q"]) == (
        "POST",
        "/query",
        'CREATE DATABASE "city"',
    )
    assert (write.method, write.path, write.params) == (
        "POST",
        "/write",
        {"db": "city", "precision": "ms"},
    )
    assert create.headers["authorization"] == expected
    assert write.headers["authorization"] == expected
