"""Device import files (CSV or YAML): parsed and validated with ``file:line: message`` errors.

Pure: reads one file, returns rows or problems, touches no database. The registry
applies the rows in one transaction only when there is no problem at all.

CSV: a header row naming the columns, then one device per row::

    id,asset_type,district,latitude,longitude,install_date,metadata
    fg-d01-001,flood_gauge,d01,51.5072,-0.1276,2025-03-14,"{""river"": ""Thames""}"

YAML: a list of mappings, or a mapping with a ``devices`` list::

    devices:
      - id: fg-d01-001
        asset_type: flood_gauge
        district: d01
        latitude: 51.5072
        longitude: -0.1276
        install_date: 2025-03-14
        metadata: {river: Thames}

``id``, ``asset_type`` and ``district`` are required; ``latitude`` and
``longitude`` go together; ``install_date`` is ``YYYY-MM-DD``; ``metadata`` is a
mapping (a JSON object in CSV). Any other column or key is an error.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.messages import ASSET_TYPE_RE, DEVICE_ID_RE, DISTRICT_RE
from hub.yamlfile import YamlMap, YamlSeq, YamlSyntaxError, item_line, key_line, parse_yaml, plain

COLUMNS = ("id", "asset_type", "district", "latitude", "longitude", "install_date", "metadata")
REQUIRED = ("id", "asset_type", "district")
#: The largest import file read (a city's whole fleet is far below this).
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One valid device of an import file."""

    device_id: str
    asset_type: str
    district: str
    latitude: float | None
    longitude: float | None
    metadata: Mapping[str, Any]
    line: int


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """Rows and problems of one import file; apply only when ``problems`` is empty."""

    rows: list[DeviceRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_import_file(
    path: Path, known_asset_type: Callable[[str], bool] | None = None
) -> ParsedFile:
    """Read ``path`` (``.csv``, ``.yaml`` or ``.yml``) and validate every device in it."""
    suffix = path.suffix.lower()
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return ParsedFile(problems=[f"{path}:1: file larger than {MAX_FILE_BYTES} bytes"])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ParsedFile(problems=[f"{path}:1: cannot read: {exc}"])
    if suffix == ".csv":
        raw, problems = _csv_records(path, text)
    elif suffix in {".yaml", ".yml"}:
        raw, problems = _yaml_records(path, text)
    else:
        return ParsedFile(problems=[f"{path}:1: unknown file type; use .csv, .yaml or .yml"])
    rows: list[DeviceRow] = []
    first_line: dict[str, int] = {}
    for line, record in raw:
        row, errors = _validate(record, line, known_asset_type)
        problems.extend(f"{path}:{line}: {e}" for e in errors)
        if row is None:
            continue
        if row.device_id in first_line:
            problems.append(
                f"{path}:{line}: duplicate id {row.device_id!r} "
                f"(first on line {first_line[row.device_id]})"
            )
            continue
        first_line[row.device_id] = line
        rows.append(row)
    if not raw and not problems:
        problems.append(f"{path}:1: no devices in file")
    return ParsedFile(rows=rows, problems=problems)


# ---------------------------------------------------------------------- readers


def _csv_records(path: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    reader = csv.reader(text.splitlines(keepends=True))
    problems: list[str] = []
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return [], [f"{path}:1: {exc}"]
    if header is None:
        return [], [f"{path}:1: empty file; expected a header row ({', '.join(COLUMNS)})"]
    columns = [h.strip() for h in header]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        problems.append(
            f"{path}:1: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(COLUMNS)}"
        )
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        problems.append(f"{path}:1: missing required column(s) {', '.join(missing)}")
    if problems:
        return [], problems
    records: list[tuple[int, dict[str, Any]]] = []
    line = reader.line_num
    try:
        for values in reader:
            start, line = line + 1, reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(columns):
                problems.append(
                    f"{path}:{start}: {len(values)} fields, the header has {len(columns)}"
                )
                continue
            record: dict[str, Any] = {}
            for column, cell in zip(columns, values, strict=True):
                value = cell.strip()
                if value == "":
                    continue
                if column == "metadata":
                    try:
                        record[column] = json.loads(value)
                    except json.JSONDecodeError as exc:
                        record[column] = _Bad(f"metadata is not a JSON object: {exc.msg}")
                else:
                    record[column] = value
            records.append((start, record))
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: {exc}")
    return records, problems


def _yaml_records(path: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError as exc:
        return [], [f"{path}:{exc.line}: {exc}"]
    if isinstance(doc, YamlMap):
        extra = [k for k in doc if k != "devices"]
        if extra:
            line = key_line(doc, extra[0])
            return [], [f"{path}:{line}: unknown key {extra[0]!r}; expected 'devices'"]
        doc = doc.get("devices")
    if not isinstance(doc, YamlSeq):
        return [], [f"{path}:1: expected a list of devices (or a mapping with a 'devices' list)"]
    records: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    for index, item in enumerate(doc):
        line = item_line(doc, index)
        if not isinstance(item, YamlMap):
            problems.append(f"{path}:{line}: each device must be a mapping")
            continue
        record: dict[str, Any] = {}
        for key, value in item.items():
            if key not in COLUMNS:
                allowed = ", ".join(COLUMNS)
                problems.append(
                    f"{path}:{key_line(item, key)}: unknown key {key!r}; allowed: {allowed}"
                )
                continue
            record[str(key)] = plain(value)
        records.append((line, record))
    return records, problems


class _Bad:
    """A value that already failed to parse; carries the message."""

    def __init__(self, message: str) -> None:
        self.message = message


# ---------------------------------------------------------------------- validation


def _validate(
    record: Mapping[str, Any], line: int, known_asset_type: Callable[[str], bool] | None
) -> tuple[DeviceRow | None, list[str]]:
    errors: list[str] = []
    for name in REQUIRED:
        if record.get(name) in (None, ""):
            errors.append(f"{name}: required")
    device_id = _name(record.get("id"), DEVICE_ID_RE, "id", errors)
    district = _name(record.get("district"), DISTRICT_RE, "district", errors)
    asset_type = _name(record.get("asset_type"), ASSET_TYPE_RE, "asset_type", errors)
    if asset_type and known_asset_type is not None and not known_asset_type(asset_type):
        errors.append(f"asset_type: {asset_type!r} is not in the device catalog")
        asset_type = None
    lat = _coordinate(record.get("latitude"), "latitude", 90.0, errors)
    lon = _coordinate(record.get("longitude"), "longitude", 180.0, errors)
    if (lat is None) != (lon is None) and not errors:
        errors.append("latitude and longitude: give both or neither")
    metadata: dict[str, Any] = {}
    raw_meta = record.get("metadata")
    if isinstance(raw_meta, _Bad):
        errors.append(raw_meta.message)
    elif raw_meta is not None:
        if isinstance(raw_meta, Mapping):
            metadata = dict(raw_meta)
        else:
            errors.append("metadata: must be a mapping (a JSON object in CSV)")
    install = record.get("install_date")
    if install is not None:
        if isinstance(install, dt.datetime):
            install = install.date()
        if isinstance(install, dt.date):
            metadata["install_date"] = install.isoformat()
        else:
            try:
                metadata["install_date"] = dt.date.fromisoformat(str(install)).isoformat()
            except ValueError:
                errors.append(f"install_date: {install!r} is not a date (YYYY-MM-DD)")
    if errors or device_id is None or district is None or asset_type is None:
        return None, errors
    return DeviceRow(device_id, asset_type, district, lat, lon, metadata, line), errors


def _name(value: Any, pattern: Any, what: str, errors: list[str]) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    if not pattern.fullmatch(text):
        errors.append(f"{what}: {text!r} does not match {pattern.pattern}")
        return None
    return text


def _coordinate(value: Any, what: str, limit: float, errors: list[str]) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        errors.append(f"{what}: must be a number")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors.append(f"{what}: {value!r} is not a number")
        return None
    if not math.isfinite(number) or not -limit <= number <= limit:
        errors.append(f"{what}: {value!r} is outside -{limit:g}..{limit:g}")
        return None
    return number
