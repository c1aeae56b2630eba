"""Open311 GeoReport v2 on the wire: the form a report is posted as, and the JSON and
XML documents the specification names (http://wiki.open311.org/GeoReport_v2).

Everything a citizen's app sends is bounded and checked here before the report
service sees it (:func:`parse_report_form`): the form is url-encoded (``multipart``
uploads are refused: pictures are linked with ``media_url``, an http(s) URL the hub
never fetches), every field has a length limit, control characters are refused, and
``lat``/``long`` must be a point on the Earth. Documents are built from the report
records' public fields only: the reporter's e-mail, name, phone, device and account
ids are not in :class:`hub.ports.ReportRecord` at all, so no document can carry them.

JSON follows the specification's examples (lists of objects; ``null`` for what is
absent); XML is UTF-8 with the declaration, no namespace, the specification's element
names, and the characters XML 1.0 cannot carry removed.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from hub.ports import ReportInvalid, ReportRecord, ReportSubmission, ServiceInfo

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
FORMATS = ("json", "xml")
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"

#: Field limits (the specification's 4,000 characters for a description).
MAX_DESCRIPTION = 4000
MAX_LINE = {
    "address_string": 500,
    "address_id": 100,
    "email": 254,
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "device_id": 100,
    "account_id": 100,
    "service_code": 64,
    "jurisdiction_id": 200,
    "api_key": 200,
}
MAX_MEDIA_URL = 2000
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_VALUES = 20
MAX_ATTRIBUTE_VALUE = 500
MAX_FIELDS = 200
#: Form keys of a POST besides ``attribute[...]``.
FORM_KEYS = frozenset({"description", "media_url", "lat", "long", *MAX_LINE})
_ATTRIBUTE_KEY = re.compile(r"^attribute\[([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\](\[\])?$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^[0-9+()./ -]{3,40}$")
#: Control characters (C0 but tab, line feed, carriage return; DEL; C1).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: What XML 1.0 cannot carry at all.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Open311Error(Exception):
    """An answer in the specification's error format: HTTP ``status`` and its errors."""

    def __init__(
        self, status: int, description: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = dict(headers or {})


# --------------------------------------------------------------------------- input


def _one_line(name: str, value: str) -> str:
    limit = MAX_LINE[name]
    if len(value) > limit:
        raise ReportInvalid(f"{name}: at most {limit} characters")
    if _CONTROL.search(value) or "\n" in value or "\r" in value or "\t" in value:
        raise ReportInvalid(f"{name}: control characters and line breaks are not allowed")
    return value


def _coordinate(name: str, value: str, limit: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ReportInvalid(f"{name}: {value[:40]!r} is not a number") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise ReportInvalid(f"{name}: must be a WGS84 degree between -{limit:g} and {limit:g}")
    return number


def media_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and no credentials, else ReportInvalid."""
    if len(value) > MAX_MEDIA_URL:
        raise ReportInvalid(f"media_url: at most {MAX_MEDIA_URL} characters")
    if _CONTROL.search(value) or any(c.isspace() for c in value):
        raise ReportInvalid("media_url: spaces and control characters are not allowed")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
    except ValueError:
        raise ReportInvalid("media_url: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReportInvalid("media_url: must be an http:// or https:// URL of the picture")
    if parts.username is not None or parts.password is not None:
        raise ReportInvalid("media_url: must not carry a user name or password")
    return value


def parse_report_form(body: bytes) -> tuple[ReportSubmission, str | None]:
    """A POSTed url-encoded form as a submission (and its ``jurisdiction_id``).

    Raises ReportInvalid naming the field: unknown or repeated fields, limits, control
    characters, a half location (lat without long), a bad media_url or coordinate.
    Empty fields count as absent, as the specification's optional arguments do.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportInvalid("the form is not UTF-8") from None
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except ValueError:
        raise ReportInvalid(f"the form has more than {MAX_FIELDS} fields") from None
    fields: dict[str, str] = {}
    attributes: dict[str, list[str]] = {}
    for key, value in pairs:
        found = _ATTRIBUTE_KEY.match(key)
        if found is not None:
            code = found.group(1)
            if len(value) > MAX_ATTRIBUTE_VALUE:
                raise ReportInvalid(f"attribute[{code}]: at most {MAX_ATTRIBUTE_VALUE} characters")
            if _CONTROL.search(value):
                raise ReportInvalid(f"attribute[{code}]: control characters are not allowed")
            values = attributes.setdefault(code, [])
            if values and found.group(2) is None:
                raise ReportInvalid(
                    f"attribute[{code}]: given twice (several values: attribute[{code}][]=…)"
                )
            values.append(value)
            if len(values) > MAX_ATTRIBUTE_VALUES:
                raise ReportInvalid(f"attribute[{code}]: at most {MAX_ATTRIBUTE_VALUES} values")
            if len(attributes) > MAX_ATTRIBUTES:
                raise ReportInvalid(f"at most {MAX_ATTRIBUTES} attributes")
            continue
        if key not in FORM_KEYS:
            raise ReportInvalid(f"{key[:64]!r}: not a field of a service request")
        if key in fields:
            raise ReportInvalid(f"{key}: given twice")
        fields[key] = value
    given = {k: v for k, v in fields.items() if v != ""}
    if "service_code" not in given:
        raise ReportInvalid("service_code: required (GET services.json lists them)")
    for name in MAX_LINE:
        if name in given:
            _one_line(name, given[name])
    description = given.get("description", "")
    if len(description) > MAX_DESCRIPTION:
        raise ReportInvalid(f"description: at most {MAX_DESCRIPTION} characters")
    if _CONTROL.search(description):
        raise ReportInvalid("description: control characters are not allowed")
    if ("lat" in given) != ("long" in given):
        raise ReportInvalid("lat and long: give both, or neither (then address_string)")
    lat = _coordinate("lat", given["lat"], 90) if "lat" in given else None
    lon = _coordinate("long", given["long"], 180) if "long" in given else None
    email = given.get("email")
    if email is not None and _EMAIL.match(email) is None:
        raise ReportInvalid("email: not an e-mail address")
    phone = given.get("phone")
    if phone is not None and _PHONE.match(phone) is None:
        raise ReportInvalid("phone: digits, spaces and + ( ) . / - only")
    url = given.get("media_url")
    submission = ReportSubmission(
        service_code=given["service_code"],
        lat=lat,
        lon=lon,
        address_string=given.get("address_string"),
        address_id=given.get("address_id"),
        description=description,
        media_url=media_url(url) if url is not None else None,
        email=email,
        first_name=given.get("first_name"),
        last_name=given.get("last_name"),
        phone=phone,
        device_id=given.get("device_id"),
        account_id=given.get("account_id"),
        attributes={code: tuple(values) for code, values in attributes.items()},
    )
    return submission, given.get("jurisdiction_id")


def parse_w3_datetime(name: str, value: str) -> int:
    """A w3 date and time with its time zone (``2010-01-01T00:00:00Z``) in epoch ms."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ReportInvalid(
            f"{name}: {value[:40]!r} is not a w3 date and time with its time zone,"
            " e.g. 2010-01-01T00:00:00Z"
        )
    return int(moment.timestamp() * 1000)


def w3(ms: int) -> str:
    """Epoch ms as the specification's w3 format, in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- documents


def service_doc(s: ServiceInfo) -> dict[str, Any]:
    """One entry of GET services."""
    return {
        "service_code": s.service_code,
        "service_name": s.service_name,
        "description": s.description,
        "metadata": s.metadata,
        "type": s.type,
        "keywords": ", ".join(s.keywords),
        "group": s.group,
    }


def definition_doc(s: ServiceInfo) -> dict[str, Any]:
    """GET services/{service_code}: the service definition with its attributes."""
    attributes = []
    for a in s.attributes:
        entry: dict[str, Any] = {
            "variable": a.variable,
            "code": a.code,
            "datatype": a.datatype,
            "required": a.required,
            "datatype_description": a.datatype_description or None,
            "order": a.order,
            "description": a.description,
        }
        if a.values:
            entry["values"] = [{"key": v.key, "name": v.name} for v in a.values]
        attributes.append(entry)
    return {"service_code": s.service_code, "attributes": attributes}


def request_doc(r: ReportRecord, service: ServiceInfo | None) -> dict[str, Any]:
    """One service request as the public sees it (never contact data: the record has none)."""
    notes = r.status_notes
    if r.merged_into is not None and not notes:
        notes = f"Duplicate of request {r.merged_into}."
    return {
        "service_request_id": r.id,
        "status": r.public_status,
        "status_notes": notes or None,
        "service_name": r.service_name,
        "service_code": r.service_code,
        "description": r.description or None,
        "agency_responsible": (service.agency_responsible if service else "") or None,
        "service_notice": (service.service_notice if service else "") or None,
        "requested_datetime": w3(r.requested_ms),
        "updated_datetime": w3(r.updated_ms),
        "expected_datetime": None,
        "address": r.address,
        "address_id": r.address_id,
        "zipcode": None,
        "lat": r.lat,
        "long": r.lon,
        "media_url": r.media_url,
    }


def created_doc(r: ReportRecord, service: ServiceInfo) -> dict[str, Any]:
    """The answer to POST requests: the id (or a token, for a batch service)."""
    doc: dict[str, Any] = (
        {"token": r.token} if r.token is not None else {"service_request_id": r.id}
    )
    doc["service_notice"] = service.service_notice or None
    doc["account_id"] = None
    return doc


def token_doc(r: ReportRecord) -> dict[str, Any]:
    """GET tokens/{token}: the request the token stands for."""
    return {"service_request_id": r.id, "token": r.token}


def discovery_doc(base_url: str, changeset: str, contact: str) -> dict[str, Any]:
    """Service discovery: this one endpoint, its formats and the specification."""
    return {
        "changeset": changeset,
        "contact": contact,
        "key_service": "No key is needed to read or to report.",
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": base_url,
                "changeset": changeset,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }


def errors_doc(code: int, description: str) -> list[dict[str, Any]]:
    """The specification's error list (one error)."""
    return [{"code": code, "description": description}]


# --------------------------------------------------------------------------- encodings

#: XML element of each item of a list, by the list's element.
ITEM = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


def to_json(doc: Any) -> bytes:
    """The document as JSON."""
    return orjson.dumps(doc)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return _NOT_XML.sub("", str(value))


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _fill(ET.SubElement(element, key), child)
    elif isinstance(value, list | tuple):
        item = ITEM[element.tag]
        for child in value:
            _fill(ET.SubElement(element, item), child)
    else:
        element.text = _text(value)


def to_xml(root: str, doc: Any) -> bytes:
    """The document as XML under ``root`` (lists become repeated item elements)."""
    element = ET.Element(root)
    _fill(element, doc)
    body = ET.tostring(element, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode("utf-8")


def encode(fmt: str, root: str, doc: Any) -> tuple[bytes, str]:
    """(body, content type) of ``doc`` in ``fmt`` (``json`` or ``xml``)."""
    if fmt == "json":
        return to_json(doc), JSON_TYPE
    return to_xml(root, doc), XML_TYPE


def split_format(name: str) -> tuple[str, str]:
    """``"requests.json"`` as (``"requests"``, ``"json"``); Open311Error(404) otherwise."""
    stem, dot, fmt = name.rpartition(".")
    if not dot or not stem:
        raise Open311Error(404, f"{name[:80]!r}: add the format to the resource: .json or .xml")
    if fmt not in FORMATS:
        raise Open311Error(404, f"format {fmt[:20]!r} is not served; use .json or .xml")
    return stem, fmt


def comma_list(name: str, value: str, limit: int) -> Sequence[str]:
    """A comma-delimited argument as its non-empty items (at most ``limit``)."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if len(items) > limit:
        raise ReportInvalid(f"{name}: at most {limit} values")
    return items
