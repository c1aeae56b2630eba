"""The SensorThings entities the public may see, built from the policy and the registry.

What becomes an entity (and nothing else is ever named):

- **Things**: each device of an asset type with a device-level (``public``) metric,
  id = its device id; and each district's *area* of an asset type with
  aggregate-only (``public_aggregate``) metrics, id ``{district}:{asset_type}``
  (device ids have no ``:``). Devices whose every metric is internal or
  restricted (manholes, water mains) are not things: neither their ids nor
  their places are public.
- **Locations** and **FeaturesOfInterest**: a device's place rounded to its asset
  type's precision; an area's is the mean place of its devices, rounded, and only
  when it has at least ``k`` located devices (so it is never one device's place).
- **Datastreams**: one per device and ``public`` metric, id ``{device}:{metric}``;
  one per area and ``public_aggregate`` metric, id ``{district}:{asset_type}:{metric}``.
- **Sensors**: one per asset type (``{asset_type}``) for device readings, and one
  aggregation procedure per asset type (``{asset_type}:aggregate``).
- **ObservedProperties**: one per published metric name.

The index is a snapshot. Every ``INDEX_TTL_S`` the registry's device counts are
compared with the snapshot's; when devices came or went, or the snapshot is older
than ``INDEX_MAX_AGE_S``, it is built again: a device added appears in open data
within a minute, one moved within ten. The registry is read on the event loop (it
belongs to the live stage) and the entities are built from that copy in a thread,
while requests go on using the previous index.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hub.durations import format_duration
from hub.opendata.odata import Kind
from hub.opendata.policy import OpenDataPolicy, PublishedMetric
from hub.ports import DeviceFilter, DeviceInfo, DeviceRegistryPort, Scope

#: How often the registry is asked whether devices came or went (a cheap count), in s.
INDEX_TTL_S = 60.0
#: The index is built again at least this often, in s (a device moved, not added).
INDEX_MAX_AGE_S = 600.0
#: Every device the registry lists at once for a snapshot (a city's worth).
MAX_DEVICES = 10_000_000

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
OBSERVATION_TYPE = {"number": OM + "OM_Measurement", "bool": OM + "OM_TruthObservation"}
GEOJSON = "application/geo+json"

#: Entity sets, and their navigation properties: name -> (entity set, to many).
NAVIGATION: dict[str, dict[str, tuple[str, bool]]] = {
    "Things": {"Locations": ("Locations", True), "Datastreams": ("Datastreams", True)},
    "Locations": {"Things": ("Things", True)},
    "Datastreams": {
        "Thing": ("Things", False),
        "Sensor": ("Sensors", False),
        "ObservedProperty": ("ObservedProperties", False),
        "Observations": ("Observations", True),
    },
    "Sensors": {"Datastreams": ("Datastreams", True)},
    "ObservedProperties": {"Datastreams": ("Datastreams", True)},
    "Observations": {
        "Datastream": ("Datastreams", False),
        "FeatureOfInterest": ("FeaturesOfInterest", False),
    },
    "FeaturesOfInterest": {"Observations": ("Observations", True)},
}
ENTITY_SETS = tuple(NAVIGATION)

#: Properties of each entity set's JSON (besides ``@iot.id``, ``@iot.selfLink``).
PROPERTIES: dict[str, tuple[str, ...]] = {
    "Things": ("name", "description", "properties"),
    "Locations": ("name", "description", "encodingType", "location"),
    "Datastreams": ("name", "description", "observationType", "unitOfMeasurement", "properties"),
    "Sensors": ("name", "description", "encodingType", "metadata"),
    "ObservedProperties": ("name", "definition", "description"),
    "Observations": ("phenomenonTime", "resultTime", "result", "parameters"),
    "FeaturesOfInterest": ("name", "description", "encodingType", "feature"),
}

_TEXT: dict[str, Kind] = {"@iot.id": "string", "name": "string", "description": "string"}
#: What ``$filter`` and ``$orderby`` may name, per entity set, and of which kind.
FILTERABLE: dict[str, dict[str, Kind]] = {
    "Things": {
        **_TEXT,
        "properties/kind": "string",
        "properties/district": "string",
        "properties/asset_type": "string",
    },
    "Locations": dict(_TEXT),
    "Datastreams": {
        **_TEXT,
        "observationType": "string",
        "unitOfMeasurement/symbol": "string",
        "properties/metric": "string",
        "properties/tier": "string",
        "properties/district": "string",
        "properties/asset_type": "string",
        "Thing/@iot.id": "string",
        "Sensor/@iot.id": "string",
        "ObservedProperty/@iot.id": "string",
    },
    "Sensors": dict(_TEXT),
    "ObservedProperties": {**_TEXT, "definition": "string"},
    "Observations": {
        "@iot.id": "string",
        "phenomenonTime": "time",
        "resultTime": "time",
        "result": "result",
        "Datastream/@iot.id": "string",
    },
    "FeaturesOfInterest": dict(_TEXT),
}


@dataclass(frozen=True, slots=True)
class Record:
    """One entity of the index: its JSON properties, filterable values and links."""

    entity_set: str
    id: str
    body: dict[str, Any]
    values: dict[str, str]
    #: Navigation property -> the linked ids (to-many) or id (to-one, None when absent).
    links: dict[str, list[str] | str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stream:
    """What a Datastream reads: one device's metric, or one district's aggregate cells."""

    id: str
    metric: PublishedMetric
    district: str
    device_id: str | None  # None: an area's aggregate
    thing_id: str
    feature_id: str | None


class Index:
    """A snapshot of the public entities (module docstring)."""

    def __init__(self, built_at: float, fingerprint: object = None) -> None:
        self.built_at = built_at
        #: What the registry looked like (devices per district and asset type).
        self.fingerprint = fingerprint
        self.sets: dict[str, dict[str, Record]] = {name: {} for name in ENTITY_SETS}
        self.streams: dict[str, Stream] = {}
        self._sorted: dict[str, list[Record]] = {}
        self._boxes: dict[str, tuple[float, float, float, float]] | None = None
        # While building: the datastreams of each sensor and observed property.
        self.of_sensor: dict[str, list[str]] = defaultdict(list)
        self.of_property: dict[str, list[str]] = defaultdict(list)
        self.observed: dict[str, PublishedMetric] = {}

    def add(self, record: Record) -> None:
        """Add ``record`` (a later one with the same id is ignored)."""
        self.sets[record.entity_set].setdefault(record.id, record)

    def get(self, entity_set: str, entity_id: str) -> Record | None:
        """One entity, or None."""
        return self.sets.get(entity_set, {}).get(entity_id)

    def bbox(self, asset_type: str) -> tuple[float, float, float, float] | None:
        """(west, south, east, north) of the public places of ``asset_type``'s Things, or
        None; worked out once per snapshot for every asset type."""
        if self._boxes is None:
            boxes: dict[str, tuple[float, float, float, float]] = {}
            for location in self.sets["Locations"].values():
                thing = self.get("Things", location.id)
                if thing is None:
                    continue
                kind = thing.values["properties/asset_type"]
                lon, lat = location.body["location"]["coordinates"]
                w, s, e, n = boxes.get(kind, (lon, lat, lon, lat))
                boxes[kind] = (min(w, lon), min(s, lat), max(e, lon), max(n, lat))
            self._boxes = boxes
        return self._boxes.get(asset_type)

    def records(self, entity_set: str) -> list[Record]:
        """Every entity of ``entity_set`` by id."""
        found = self._sorted.get(entity_set)
        if found is None:
            found = self._sorted[entity_set] = [
                self.sets[entity_set][k] for k in sorted(self.sets[entity_set])
            ]
        return found


#: Where a Sensor's metadata is (the server's address goes in front when it is served).
CATALOG_PATH = "/open/v1/catalog.json"


def public_devices(policy: OpenDataPolicy, registry: DeviceRegistryPort) -> list[DeviceInfo]:
    """The devices of asset types with anything published (a snapshot of the registry)."""
    wanted = Scope(asset_types=frozenset(policy.asset_types()))
    return registry.list_devices(DeviceFilter(limit=MAX_DEVICES), wanted)


def fingerprint(policy: OpenDataPolicy, registry: DeviceRegistryPort) -> object:
    """How many public devices each district and asset type has (cheap: the registry keeps
    these counts); a change means devices came or went."""
    wanted = Scope(asset_types=frozenset(policy.asset_types()))
    return tuple(sorted((k, c.devices) for k, c in registry.device_counts(wanted).items()))


def build_index(
    policy: OpenDataPolicy, devices: list[DeviceInfo], built_at: float, seen: object = None
) -> Index:
    """The public entities of ``devices`` (module docstring); pure, safe in a thread."""
    index = Index(built_at, seen)
    device_types = frozenset(policy.device_level_types())
    aggregate_types = frozenset(policy.aggregate_types())
    areas: dict[tuple[str, str], list[DeviceInfo]] = defaultdict(list)
    for device in devices:
        if device.asset_type in device_types:
            _add_device(index, policy, device)
        if device.asset_type in aggregate_types:
            areas[(device.district, device.asset_type)].append(device)
    for (district, asset_type), members in sorted(areas.items()):
        _add_area(index, policy, district, asset_type, members)
    for asset_type in sorted(device_types):
        _sensor(index, asset_type, asset_type, policy.description(asset_type))
    for asset_type in sorted(aggregate_types):
        _sensor(
            index,
            f"{asset_type}:aggregate",
            f"{asset_type} district aggregate",
            f"Mean per district and time bucket of the readings of the {asset_type} devices "
            "of a district, published only where at least k devices reported (k as each "
            "Datastream's properties say)",
        )
    for name, metric in sorted(index.observed.items()):
        definition = f"urn:city-hub:metric:{name}"
        index.add(
            Record(
                "ObservedProperties",
                name,
                {"name": name, "definition": definition, "description": metric.description},
                {**_text(name, name, metric.description), "definition": definition},
                {"Datastreams": sorted(index.of_property[name])},
            )
        )
    for entity_set in ENTITY_SETS:
        index.records(entity_set)  # sorted here, in the builder's thread, not on first use
    index.bbox("")
    return index


def _text(entity_id: str, name: str, description: str) -> dict[str, str]:
    return {"@iot.id": entity_id, "name": name, "description": description}


#: What every public place says of itself.
PLACE = "Where it is, to the precision the city publishes"


def _place(index: Index, thing_id: str, lat: float, lon: float) -> None:
    point = {"type": "Point", "coordinates": [lon, lat]}
    text = _text(thing_id, thing_id, PLACE)
    common = {"name": thing_id, "description": PLACE, "encodingType": GEOJSON}
    index.add(
        Record("Locations", thing_id, {**common, "location": point}, text, {"Things": [thing_id]})
    )
    index.add(
        Record(
            "FeaturesOfInterest", thing_id, {**common, "feature": point}, text, {"Observations": []}
        )
    )


def _add_device(index: Index, policy: OpenDataPolicy, device: DeviceInfo) -> None:
    thing = device.device_id
    located = device.latitude is not None and device.longitude is not None
    if located:
        assert device.latitude is not None
        assert device.longitude is not None
        lat, lon = policy.coarsen(device.asset_type, device.latitude, device.longitude)
        _place(index, thing, lat, lon)
    streams = []
    for metric in policy.metrics(device.asset_type, "public"):
        stream_id = f"{thing}:{metric.metric}"
        streams.append(stream_id)
        index.streams[stream_id] = Stream(
            stream_id, metric, device.district, thing, thing, thing if located else None
        )
        _datastream(
            index,
            stream_id,
            f"{metric.metric} of {thing}",
            metric.description or metric.metric,
            metric,
            device.district,
            thing,
            device.asset_type,
            {},
        )
    description = f"{policy.description(device.asset_type)} in district {device.district}"
    index.add(
        Record(
            "Things",
            thing,
            {
                "name": thing,
                "description": description,
                "properties": {
                    "kind": "device",
                    "district": device.district,
                    "asset_type": device.asset_type,
                },
            },
            {
                **_text(thing, thing, description),
                "properties/kind": "device",
                "properties/district": device.district,
                "properties/asset_type": device.asset_type,
            },
            {"Locations": [thing] if located else [], "Datastreams": streams},
        )
    )


def _add_area(
    index: Index, policy: OpenDataPolicy, district: str, asset_type: str, members: list[DeviceInfo]
) -> None:
    thing = f"{district}:{asset_type}"
    metrics = policy.metrics(asset_type, "public_aggregate")
    located = [
        (d.latitude, d.longitude)
        for d in members
        if d.latitude is not None and d.longitude is not None
    ]
    has_place = len(located) >= min(m.k for m in metrics)
    if has_place:
        lat = sum(p[0] for p in located) / len(located)
        lon = sum(p[1] for p in located) / len(located)
        _place(index, thing, *policy.coarsen(asset_type, lat, lon))
    streams = []
    for metric in metrics:
        stream_id = f"{thing}:{metric.metric}"
        streams.append(stream_id)
        index.streams[stream_id] = Stream(
            stream_id, metric, district, None, thing, thing if has_place else None
        )
        every = format_duration(metric.bucket_ms)
        when = (
            f"{format_duration(metric.delay_ms)} after the bucket ends"
            if metric.delay_ms
            else "when the bucket ends"
        )
        _datastream(
            index,
            stream_id,
            f"{metric.metric} of {asset_type} in {district}, mean per {every}",
            f"{metric.description or metric.metric}: the mean of the readings of every "
            f"{asset_type} in district {district} per {every}, where at least {metric.k} "
            f"devices reported; published {when}",
            metric,
            district,
            thing,
            asset_type,
            {
                "aggregate": "mean",
                "k": metric.k,
                "bucket_s": metric.bucket_ms // 1000,
                "delay_s": metric.delay_ms // 1000,
            },
            sensor=f"{asset_type}:aggregate",
        )
    description = (
        f"The {policy.description(asset_type)} devices of district {district}, published "
        "only as aggregates"
    )
    index.add(
        Record(
            "Things",
            thing,
            {
                "name": thing,
                "description": description,
                "properties": {"kind": "area", "district": district, "asset_type": asset_type},
            },
            {
                **_text(thing, thing, description),
                "properties/kind": "area",
                "properties/district": district,
                "properties/asset_type": asset_type,
            },
            {"Locations": [thing] if has_place else [], "Datastreams": streams},
        )
    )


def _datastream(
    index: Index,
    stream_id: str,
    name: str,
    description: str,
    metric: PublishedMetric,
    district: str,
    thing: str,
    asset_type: str,
    extra: dict[str, Any],
    *,
    sensor: str | None = None,
) -> None:
    unit = {"name": metric.unit, "symbol": metric.unit, "definition": ""}
    observation_type = OBSERVATION_TYPE[metric.type]
    index.of_sensor[sensor or asset_type].append(stream_id)
    index.of_property[metric.metric].append(stream_id)
    index.observed.setdefault(metric.metric, metric)
    index.add(
        Record(
            "Datastreams",
            stream_id,
            {
                "name": name,
                "description": description,
                "observationType": observation_type,
                "unitOfMeasurement": unit,
                "properties": {
                    "metric": metric.metric,
                    "tier": metric.tier,
                    "district": district,
                    "asset_type": asset_type,
                    **extra,
                },
            },
            {
                **_text(stream_id, name, description),
                "observationType": observation_type,
                "unitOfMeasurement/symbol": metric.unit,
                "properties/metric": metric.metric,
                "properties/tier": metric.tier,
                "properties/district": district,
                "properties/asset_type": asset_type,
                "Thing/@iot.id": thing,
                "Sensor/@iot.id": sensor or asset_type,
                "ObservedProperty/@iot.id": metric.metric,
            },
            {
                "Thing": thing,
                "Sensor": sensor or asset_type,
                "ObservedProperty": metric.metric,
                "Observations": [],
            },
        )
    )


def _sensor(index: Index, sensor_id: str, name: str, description: str) -> None:
    index.add(
        Record(
            "Sensors",
            sensor_id,
            {
                "name": name,
                "description": description,
                "encodingType": "application/json",
                "metadata": CATALOG_PATH,
            },
            _text(sensor_id, name, description),
            {"Datastreams": sorted(index.of_sensor[sensor_id])},
        )
    )
