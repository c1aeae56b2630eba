"""InfluxDB 1.x, 2.x and 3.x Core over HTTP: line-protocol writes, InfluxQL reads.

The only module that speaks InfluxDB. Per API version (``HUB_INFLUX__API``):

========  =============================================  ====================================
api       write                                          query (InfluxQL)
========  =============================================  ====================================
``v1``    ``POST /write?db=&precision=ms``               ``GET /query?db=&q=&epoch=ms``
          basic auth from username / password
``v2``    ``POST /api/v2/write?org=&bucket=&precision=ms``  ``GET /query?db=<bucket>&q=&epoch=ms``
          ``Authorization: Token <token>``               (the 1.x-compatible endpoint; the bucket
                                                         needs a DBRP mapping, which 2.x creates
                                                         virtually for every bucket)
``v3``    ``POST /api/v3/write_lp?db=&precision=millisecond``  ``GET /api/v3/query_influxql?db=&q=
          ``Authorization: Bearer <token>``              &format=json``
========  =============================================  ====================================

Errors: a connection failure, a timeout, 5xx, 429, 401/403 or an unknown
database raise :class:`StoreUnavailable` (the sink retries; the readings wait in
the journal). A 400/422 means some points were refused: the offending lines
are found from the error text (1.x and 2.x quote the line or name the field
type conflict, 3.x lists line numbers), else by bisecting the batch; they are
returned in ``WriteResult.refused`` and the rest is written (rewriting a point
is idempotent, so a point InfluxDB already kept costs nothing).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import MetricValue, Reading
from hub.settings import InfluxSettings
from hub.store.base import (
    AGGREGATES,
    AreaCell,
    AreaQuery,
    Point,
    StoreQueryError,
    StoreUnavailable,
    TelemetryQuery,
    WriteResult,
)
from hub.store.line_protocol import RESERVED_FIELDS, readings_to_lines

log = get_logger(__name__)

TAGS = ("district", "device_id")
#: History is read in time windows; a window adapts to hold about this many rows.
HISTORY_TARGET_ROWS = 20_000
HISTORY_FIRST_WINDOW_MS = 3_600_000
HISTORY_MAX_WINDOW_MS = 7 * 86_400_000
#: Latest instant InfluxDB can store (int64 nanoseconds), in ms.
INFLUX_MAX_MS = (2**63 - 1) // 1_000_000

_QUOTED_LINE = re.compile(r"unable to parse '((?:[^'\\]|\\.|'(?!: ))*)': ([^\n]*)")
_TYPE_CONFLICT = re.compile(
    r'field type conflict: input field \\?"([^"\\]+)\\?" on measurement \\?"([^"\\]+)\\?" '
    r"is type (\w+), already exists as type (\w+)"
)
_LINE_NUMBER = re.compile(r"\bline (\d+)\b")
_DROPPED = re.compile(r"dropped=(\d+)")


@dataclass(frozen=True, slots=True)
class _Series:
    name: str
    columns: list[str]
    values: list[list[Any]]
    #: The series' tags of a ``GROUP BY tag`` (1.x and 2.x; 3.x has them as columns).
    tags: dict[str, str] = field(default_factory=dict)

    def tag(self, row: list[Any], name: str) -> str | None:
        """Tag ``name`` of ``row``: from the series' tags, or the row's own column."""
        if name in self.tags:
            return self.tags[name]
        if name in self.columns:
            value = row[self.columns.index(name)]
            return None if value is None else str(value)
        return None


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _time_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise StoreQueryError(f"bad time value {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        # Trim sub-microsecond digits (nanosecond precision) for fromisoformat.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return round(parsed.timestamp() * 1000)
    raise StoreQueryError(f"bad time value {value!r}")


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:2000] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return json.dumps(body)[:2000]


class InfluxStore:
    """Telemetry in InfluxDB 1.x, 2.x or 3.x Core (CONTRACT §3 layout)."""

    name = "influxdb"

    def __init__(self, settings: InfluxSettings, *, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.api = settings.api
        headers = {"User-Agent": "city-sensing-hub"}
        auth: httpx.BasicAuth | None = None
        token = settings.token.get_secret_value() if settings.token is not None else ""
        if self.api == "v2":
            headers["Authorization"] = f"Token {token}"
        elif self.api == "v3" and token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.api == "v1" and settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            auth = httpx.BasicAuth(settings.username, password)
        self._client = httpx.AsyncClient(
            base_url=settings.url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=settings.timeout_s,
        )

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Check the server answers; on 1.x create the database if it is missing."""
        if not await self.ping():
            raise StoreUnavailable(f"InfluxDB at {self.settings.url} does not answer")
        if self.api == "v1":
            try:
                await self._influxql(f"CREATE DATABASE {_ident(self.settings.database)}", post=True)
            except (StoreUnavailable, StoreQueryError) as exc:
                # A user without admin rights cannot create it; it may well exist.
                log.warning("could not create the InfluxDB database", error=str(exc))
        log.info("influxdb store open", url=self.settings.url, api=self.api)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def ping(self) -> bool:
        """True when the server answers its health endpoint."""
        path = "/health" if self.api == "v3" else "/ping"
        try:
            response = await self._client.get(path)
        except httpx.HTTPError:
            return False
        return response.status_code < 300 or (self.api == "v3" and response.status_code == 401)

    # ------------------------------------------------------------------ writes

    def _write_request(self) -> tuple[str, dict[str, str]]:
        s = self.settings
        if self.api == "v1":
            return "/write", {"db": s.database, "precision": "ms"}
        if self.api == "v2":
            return "/api/v2/write", {"org": s.org, "bucket": s.database, "precision": "ms"}
        return "/api/v3/write_lp", {"db": s.database, "precision": "millisecond"}

    async def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Write readings (one point each); refuse only the points InfluxDB refuses."""
        lines, early = readings_to_lines(readings)
        late = await self._write_lines(lines, depth=0) if lines else []
        return WriteResult(written=len(lines) - len(late), refused=[*early, *late])

    async def _post_lines(self, lines: Sequence[tuple[Reading, str]]) -> httpx.Response:
        path, params = self._write_request()
        body = "\n".join(line for _, line in lines).encode()
        try:
            response = await self._client.post(
                path,
                params=params,
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB at {self.settings.url}: {exc!r}") from exc
        status = response.status_code
        if status < 300 or status in (400, 413, 422):
            return response
        text = _error_text(response)
        if status == 404 and self.api == "v1" and "database not found" in text:
            # Dropped under us, or open() never ran: create it and let the sink retry.
            try:
                await self._influxql(f"CREATE DATABASE {_ident(self.settings.database)}", post=True)
            except StoreQueryError as exc:
                raise StoreUnavailable(f"database missing and not creatable: {exc}") from exc
        if status in (401, 403):
            text = f"authentication refused (check HUB_INFLUX__TOKEN / USERNAME): {text}"
        raise StoreUnavailable(f"InfluxDB write answered {status}: {text}")

    async def _write_lines(
        self, lines: Sequence[tuple[Reading, str]], *, depth: int
    ) -> list[tuple[Reading, str]]:
        response = await self._post_lines(lines)
        if response.status_code < 300:
            return []
        if response.status_code == 413 and len(lines) > 1:
            mid = len(lines) // 2
            first = await self._write_lines(lines[:mid], depth=depth + 1)
            return first + await self._write_lines(lines[mid:], depth=depth + 1)
        reason = _error_text(response)
        if len(lines) == 1:
            return [(lines[0][0], f"InfluxDB refused the point: {reason}")]
        bad = self._offending(lines, response, reason)
        if bad:
            refused = [(lines[i][0], why) for i, why in sorted(bad.items())]
            rest = [line for i, line in enumerate(lines) if i not in bad]
            if rest:
                refused.extend(await self._write_lines(rest, depth=depth + 1))
            return refused
        dropped = _DROPPED.search(reason)
        if dropped and int(dropped.group(1)) == len(lines):
            return [(r, f"InfluxDB refused the point: {reason}") for r, _ in lines]
        # Nothing in the message says which: bisect (rewrites are idempotent).
        mid = len(lines) // 2
        first = await self._write_lines(lines[:mid], depth=depth + 1)
        return first + await self._write_lines(lines[mid:], depth=depth + 1)

    def _offending(
        self, lines: Sequence[tuple[Reading, str]], response: httpx.Response, reason: str
    ) -> dict[int, str]:
        """Indexes of the lines the error names, with the reason for each."""
        bad: dict[int, str] = {}
        # 3.x: {"error": …, "data": [{"line_number": n, "error_message": …}, …]}
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            for item in body["data"]:
                if isinstance(item, dict) and isinstance(item.get("line_number"), int):
                    index = item["line_number"] - 1
                    if 0 <= index < len(lines):
                        bad[index] = f"InfluxDB refused the point: {item.get('error_message', '')}"
            if bad:
                return bad
        # 1.x / 2.x: "unable to parse '<line>': why"
        quoted = {m.group(1): m.group(2) for m in _QUOTED_LINE.finditer(reason)}
        if quoted:
            for i, (_, line) in enumerate(lines):
                why = quoted.get(line)
                if why is not None:
                    bad[i] = f"InfluxDB could not parse the point: {why}"
            if bad:
                return bad
        # Field type conflict: the points of that measurement with that field's new type.
        conflict = _TYPE_CONFLICT.search(reason)
        if conflict:
            field, measurement, new_type, old_type = conflict.groups()
            for i, (reading, _) in enumerate(lines):
                if reading.asset_type != measurement or field not in reading.metrics:
                    continue
                value = reading.metrics[field]
                kind = "boolean" if isinstance(value, bool) else "float"
                if kind == new_type:
                    bad[i] = (
                        f"field type conflict: {field!r} is {old_type} in {measurement!r}, "
                        f"this reading sends {new_type}"
                    )
            if bad:
                return bad
        # Some APIs name line numbers in the message.
        for match in _LINE_NUMBER.finditer(reason):
            index = int(match.group(1)) - 1
            if 0 <= index < len(lines):
                bad[index] = f"InfluxDB refused the point: {reason}"
        return bad

    # ------------------------------------------------------------------ queries

    async def _influxql(
        self, q: str, *, post: bool = False, complete: bool = False
    ) -> list[_Series]:
        """Run InfluxQL; with ``complete``, raise _Truncated if the server cut the answer."""
        s = self.settings
        if self.api == "v3":
            path, params = "/api/v3/query_influxql", {"db": s.database, "q": q, "format": "json"}
        else:
            path, params = "/query", {"db": s.database, "q": q, "epoch": "ms"}
        try:
            if post:
                response = await self._client.post(path, params=params)
            else:
                response = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB at {s.url}: {exc!r}") from exc
        status = response.status_code
        if status >= 500 or status in (401, 403, 408, 429):
            raise StoreUnavailable(f"InfluxDB query answered {status}: {_error_text(response)}")
        if status >= 400:
            text = _error_text(response)
            if "not found" in text and ("database" in text or "table" in text):
                return []
            raise StoreQueryError(f"InfluxDB refused the query: {text}")
        try:
            body = response.json()
        except ValueError as exc:
            raise StoreUnavailable(f"InfluxDB answered a non-JSON body: {exc}") from exc
        if self.api == "v3":
            return _series_from_rows(body)
        return _series_from_results(body, complete=complete)

    async def _field_types(self, measurement: str) -> dict[str, str]:
        series = await self._influxql(f"SHOW FIELD KEYS FROM {_ident(measurement)}")
        types: dict[str, str] = {}
        for s in series:
            if "fieldKey" not in s.columns:
                continue
            k, t = s.columns.index("fieldKey"), s.columns.index("fieldType")
            for row in s.values:
                types[str(row[k])] = str(row[t])
        return types

    async def query(self, query: TelemetryQuery) -> list[Point]:
        """Points of one device, raw or aggregated, ordered by time then metric."""
        where = (
            f"WHERE {_ident('device_id')} = {_literal(query.device_id)} "
            f"AND time >= {int(query.start_ms)}ms AND time < {int(query.end_ms)}ms"
        )
        source = _ident(query.asset_type)
        if query.every_ms is None or query.agg is None:
            fields = ", ".join(_ident(m) for m in query.metrics) if query.metrics else "*"
            # Identifiers and literals go through _ident/_literal, numbers through int().
            order = "DESC" if query.descending else "ASC"
            limit = int(query.limit)
            q = f"SELECT {fields} FROM {source} {where} ORDER BY time {order} LIMIT {limit}"  # noqa: S608
            points: list[Point] = []
            for s in await self._influxql(q):
                names = [
                    c
                    for c in s.columns
                    if c != "time" and c not in TAGS and c not in RESERVED_FIELDS
                ]
                wanted = sorted(set(names) & set(query.metrics)) if query.metrics else sorted(names)
                idx = {c: s.columns.index(c) for c in wanted}
                t = s.columns.index("time")
                for row in s.values:
                    ts = _time_ms(row[t])
                    for name in wanted:
                        value = _as_float(row[idx[name]])
                        if value is not None:
                            points.append(Point(ts, name, value))
            points.sort(key=lambda p: (-p.ts_ms if query.descending else p.ts_ms, p.metric))
            return points[: query.limit]
        if query.every_ms <= 0:
            raise StoreQueryError("every must be positive")
        if query.agg not in AGGREGATES:
            raise StoreQueryError(f"unknown aggregate {query.agg!r}")
        types = await self._field_types(query.asset_type)
        candidates = list(query.metrics) if query.metrics else list(types)
        numeric_only = query.agg in ("mean", "min", "max")
        metrics = sorted(
            m
            for m in set(candidates)
            if m in types
            and m not in RESERVED_FIELDS
            and not (numeric_only and types[m] not in ("float", "integer"))
            and types[m] != "string"
        )
        if not metrics:
            return []
        selects = ", ".join(f"{query.agg}({_ident(m)}) AS {_ident(m)}" for m in metrics)
        q = (
            f"SELECT {selects} FROM {source} {where} "  # noqa: S608 (escaped, see above)
            f"GROUP BY time({int(query.every_ms)}ms) fill(none)"
        )
        out: list[Point] = []
        for s in await self._influxql(q):
            t = s.columns.index("time")
            idx = {m: s.columns.index(m) for m in metrics if m in s.columns}
            for row in s.values:
                ts = _time_ms(row[t])
                for name, i in idx.items():
                    value = _as_float(row[i])
                    if value is None or (query.agg == "count" and value == 0):
                        continue
                    out.append(Point(ts, name, value))
        out.sort(key=lambda p: (-p.ts_ms if query.descending else p.ts_ms, p.metric))
        return out[: query.limit]

    async def area_aggregate(self, query: AreaQuery) -> list[AreaCell]:
        """Per district, bucket and metric across the asset type's devices.

        One query groups by bucket, district and device (``COUNT``/``SUM``/``MIN``/``MAX``;
        booleans, which InfluxQL cannot sum, as ``COUNT`` of all and of ``true``); the
        per-device figures are combined here. Readings flagged out of range are rare
        (sensor faults): the devices that have any in the range are read raw and their
        figures recomputed without the flagged values.
        """
        if query.every_ms <= 0:
            raise StoreQueryError("every must be positive")
        start, end = max(query.start_ms, -INFLUX_MAX_MS), min(query.end_ms, INFLUX_MAX_MS)
        if start >= end or not query.metrics:
            return []
        types = await self._field_types(query.asset_type)
        metrics = sorted(
            m
            for m in set(query.metrics)
            if types.get(m) in ("float", "integer", "boolean") and m not in RESERVED_FIELDS
        )
        if not metrics:
            return []
        source = _ident(query.asset_type)
        every = int(query.every_ms)
        where = f"WHERE time >= {int(start)}ms AND time < {int(end)}ms"
        group = f"GROUP BY time({every}ms), {_ident('district')}, {_ident('device_id')} fill(none)"
        # (district, device, bucket, metric) -> [readings, total, min, max]
        per: dict[tuple[str, str, int, str], list[float]] = {}
        numeric = [m for m in metrics if types[m] != "boolean"]
        if numeric:
            selects = ", ".join(
                f"COUNT({_ident(m)}) AS {_ident(f'c{i}')}, SUM({_ident(m)}) AS {_ident(f's{i}')}, "
                f"MIN({_ident(m)}) AS {_ident(f'lo{i}')}, MAX({_ident(m)}) AS {_ident(f'hi{i}')}"
                for i, m in enumerate(numeric)
            )
            q = f"SELECT {selects} FROM {source} {where} {group}"  # noqa: S608 (escaped)
            for s in await self._influxql(q):
                for row in s.values:
                    key = _device_bucket(s, row)
                    if key is None:
                        continue
                    for i, m in enumerate(numeric):
                        n = _as_float(row[s.columns.index(f"c{i}")])
                        if n:
                            per[(*key, m)] = [
                                n,
                                _as_float(row[s.columns.index(f"s{i}")]) or 0.0,
                                _as_float(row[s.columns.index(f"lo{i}")]) or 0.0,
                                _as_float(row[s.columns.index(f"hi{i}")]) or 0.0,
                            ]
        for m in (m for m in metrics if types[m] == "boolean"):
            counts: dict[tuple[str, str, int], list[float]] = {}
            for only_true in (False, True):
                cond = f" AND {_ident(m)} = true" if only_true else ""
                count = f"COUNT({_ident(m)}) AS {_ident('c')}"
                q = f"SELECT {count} FROM {source} {where}{cond} {group}"  # noqa: S608
                for s in await self._influxql(q):
                    for row in s.values:
                        key = _device_bucket(s, row)
                        n = _as_float(row[s.columns.index("c")])
                        if key is not None and n:
                            counts.setdefault(key, [0.0, 0.0])[int(only_true)] = n
            for key, (n, trues) in counts.items():
                if n:
                    per[(*key, m)] = [n, trues, 1.0 if trues == n else 0.0, 1.0 if trues else 0.0]
        await self._drop_flagged(query, source, metrics, where, per)
        return _area_cells(per)

    async def _drop_flagged(
        self,
        query: AreaQuery,
        source: str,
        metrics: list[str],
        where: str,
        per: dict[tuple[str, str, int, str], list[float]],
    ) -> None:
        """Recompute, from raw points, the figures of devices with values flagged out of range."""
        q = (
            f"SELECT {_ident('out_of_range')}, {_ident('device_id')} FROM {source} {where}"  # noqa: S608
            f" AND {_ident('quality')} = 'out_of_range'"
        )
        flagged = {
            device
            for s in await self._influxql(q)
            for row in s.values
            if (device := s.tag(row, "device_id")) is not None
            and set(str(row[s.columns.index("out_of_range")] or "").split(",")) & set(metrics)
        }
        for device in sorted(flagged):
            for key in [k for k in per if k[1] == device]:
                del per[key]
            fields = ", ".join(_ident(m) for m in [*metrics, "out_of_range", "district"])
            raw = (
                f"SELECT {fields} FROM {source} {where}"  # noqa: S608 (escaped)
                f" AND {_ident('device_id')} = {_literal(device)}"
            )
            for s in await self._influxql(raw):
                t = s.columns.index("time")
                for row in s.values:
                    district = s.tag(row, "district")
                    if district is None:
                        continue
                    bad = set(str(row[s.columns.index("out_of_range")] or "").split(","))
                    bucket = _time_ms(row[t]) // query.every_ms * query.every_ms
                    for m in metrics:
                        if m in bad or m not in s.columns:
                            continue
                        v = _as_float(row[s.columns.index(m)])
                        if v is None:
                            continue
                        slot = per.get((district, device, bucket, m))
                        if slot is None:
                            per[(district, device, bucket, m)] = [1.0, v, v, v]
                        else:
                            slot[0] += 1
                            slot[1] += v
                            slot[2] = min(slot[2], v)
                            slot[3] = max(slot[3], v)

    async def history(
        self, start_ms: int, end_ms: int, asset_types: Sequence[str] | None = None
    ) -> AsyncIterator[Reading]:
        """Every stored reading in ``[start_ms, end_ms)`` in time order, read window by window."""
        if asset_types is None:
            measurements: list[str] = []
            for s in await self._influxql("SHOW MEASUREMENTS"):
                col = s.columns.index("name") if "name" in s.columns else 0
                measurements.extend(str(row[col]) for row in s.values)
        else:
            measurements = list(asset_types)
        if not measurements:
            return
        source = ", ".join(_ident(m) for m in measurements)
        # InfluxDB's time range ends in 2262 (int64 nanoseconds).
        end_ms = min(end_ms, INFLUX_MAX_MS)
        cursor: int | None = max(start_ms, -INFLUX_MAX_MS)
        window = HISTORY_FIRST_WINDOW_MS
        while cursor is not None and cursor < end_ms:
            stop = min(end_ms, cursor + window)
            q = f"SELECT * FROM {source} WHERE time >= {cursor}ms AND time < {stop}ms"  # noqa: S608
            try:
                series = await self._influxql(q, complete=True)
            except _Truncated:
                if window <= 1:
                    raise StoreQueryError(
                        "InfluxDB truncates even a 1 ms window (max-row-limit); raise it"
                    ) from None
                window = max(1, window // 4)  # the server's max-row-limit cut it: smaller
                continue
            rows = sum(len(s.values) for s in series)
            if rows > 4 * HISTORY_TARGET_ROWS and window > 1000:
                window //= 4  # too big a page: read this stretch in smaller windows
                continue
            readings = [r for s in series for r in _readings(s)]
            readings.sort(key=lambda r: (r.ts_ms, r.asset_type, r.district, r.device_id))
            for reading in readings:
                yield reading
            if rows == 0:
                # Skip the gap in one step: jump to the next stored timestamp.
                cursor = await self._next_time(source, stop, end_ms)
                continue
            cursor = stop
            if rows < HISTORY_TARGET_ROWS // 4:
                window = min(window * 4, HISTORY_MAX_WINDOW_MS)
            elif rows > HISTORY_TARGET_ROWS:
                window = max(window // 2, 1000)

    async def _next_time(self, source: str, start_ms: int, end_ms: int) -> int | None:
        """The earliest timestamp in ``[start_ms, end_ms)`` of ``source``, or None."""
        if start_ms >= end_ms:
            return None
        q = f"SELECT * FROM {source} WHERE time >= {start_ms}ms AND time < {end_ms}ms LIMIT 1"  # noqa: S608
        firsts = [
            _time_ms(s.values[0][s.columns.index("time")])
            for s in await self._influxql(q)
            if s.values
        ]
        return min(firsts) if firsts else None


class _Truncated(Exception):
    """The server returned only part of the answer (``"partial": true``, max-row-limit)."""


def _series_from_results(body: Any, *, complete: bool = False) -> list[_Series]:
    """1.x / 2.x ``/query`` JSON into series; a statement error raises StoreQueryError."""
    if not isinstance(body, dict):
        raise StoreQueryError(f"unexpected InfluxDB answer: {str(body)[:200]}")
    if "error" in body:
        raise StoreQueryError(f"InfluxDB refused the query: {body['error']}")
    out: list[_Series] = []
    for result in body.get("results", []):
        if "error" in result:
            error = str(result["error"])
            if "database not found" in error:
                return []
            raise StoreQueryError(f"InfluxDB refused the query: {error}")
        if complete and (
            result.get("partial") or any(x.get("partial") for x in result.get("series") or [])
        ):
            raise _Truncated
        for s in result.get("series", []) or []:
            tags = {str(k): str(v) for k, v in (s.get("tags") or {}).items()}
            out.append(_Series(str(s.get("name", "")), list(s["columns"]), list(s["values"]), tags))
    return out


def _device_bucket(s: _Series, row: list[Any]) -> tuple[str, str, int] | None:
    """(district, device, bucket start) of a row grouped by time, district and device."""
    district, device = s.tag(row, "district"), s.tag(row, "device_id")
    if district is None or device is None:
        return None
    return district, device, _time_ms(row[s.columns.index("time")])


def _area_cells(per: dict[tuple[str, str, int, str], list[float]]) -> list[AreaCell]:
    """Per-device figures summed into (district, bucket, metric) cells."""
    cells: dict[tuple[str, int, str], list[float]] = {}
    for (district, _device, bucket, metric), (n, total, low, high) in per.items():
        cell = cells.get((district, bucket, metric))
        if cell is None:
            cells[(district, bucket, metric)] = [1, n, total, low, high]
        else:
            cell[0] += 1
            cell[1] += n
            cell[2] += total
            cell[3] = min(cell[3], low)
            cell[4] = max(cell[4], high)
    return [
        AreaCell(district, bucket, metric, int(c[0]), int(c[1]), c[2], c[3], c[4])
        for (district, bucket, metric), c in cells.items()
    ]


def _series_from_rows(body: Any) -> list[_Series]:
    """3.x ``query_influxql?format=json`` rows (one object each) into series."""
    if isinstance(body, dict) and "error" in body:
        raise StoreQueryError(f"InfluxDB refused the query: {body['error']}")
    if not isinstance(body, list):
        raise StoreQueryError(f"unexpected InfluxDB answer: {str(body)[:200]}")
    by_name: dict[str, _Series] = {}
    for row in body:
        if not isinstance(row, dict):
            continue
        name = str(row.get("iox::measurement", ""))
        s = by_name.get(name)
        if s is None:
            s = by_name[name] = _Series(name, [k for k in row if k != "iox::measurement"], [])
        for key in row:
            if key != "iox::measurement" and key not in s.columns:
                s.columns.append(key)
                for old in s.values:
                    old.append(None)
        s.values.append([row.get(c) for c in s.columns])
    return list(by_name.values())


def _readings(s: _Series) -> list[Reading]:
    """Rows of ``SELECT *`` on one measurement, back into readings."""
    cols = s.columns
    t = cols.index("time")
    d = cols.index("district") if "district" in cols else -1
    dev = cols.index("device_id") if "device_id" in cols else -1
    seq_i = cols.index("seq") if "seq" in cols else -1
    q_i = cols.index("quality") if "quality" in cols else -1
    oor_i = cols.index("out_of_range") if "out_of_range" in cols else -1
    metric_cols = [
        (i, c)
        for i, c in enumerate(cols)
        if c != "time" and c not in TAGS and c not in RESERVED_FIELDS
    ]
    out: list[Reading] = []
    for row in s.values:
        metrics: dict[str, MetricValue] = {}
        for i, c in metric_cols:
            v = row[i]
            if isinstance(v, bool):
                metrics[c] = v
            elif isinstance(v, int | float) and math.isfinite(v):
                metrics[c] = float(v)
        if not metrics or dev < 0 or row[dev] is None:
            continue
        seq = row[seq_i] if seq_i >= 0 else None
        quality = row[q_i] if q_i >= 0 and row[q_i] else "ok"
        oor = row[oor_i] if oor_i >= 0 and row[oor_i] else ""
        out.append(
            Reading(
                district=str(row[d]) if d >= 0 and row[d] is not None else "",
                asset_type=s.name,
                device_id=str(row[dev]),
                ts_ms=_time_ms(row[t]),
                metrics=metrics,
                seq=int(seq)
                if isinstance(seq, int | float) and not isinstance(seq, bool)
                else None,
                quality=str(quality),
                out_of_range=tuple(x for x in str(oor).split(",") if x),
            )
        )
    return out
