"""The device catalog: each asset type's metrics, units, plausible ranges, classes, interval.

One YAML file per asset type in ``hub/catalog/`` (the file is named after the
asset type): production data, shipped with the package beside this module. The
hub uses the catalog on every reading (:meth:`Catalog.flag` marks physically
implausible values before the journal, so a broken sensor raises a sensor-fault
condition and not a false emergency), for the expected reporting interval (stale
devices, ``no_data``) and for the privacy tier of every metric: who may read it
through the API, and what of it the open-data endpoints publish (``hub.opendata``).

Tiers (``classification``): ``public`` (published device by device),
``public_aggregate`` (published only as aggregates over at least ``k`` devices
per district and time bucket, after a delay), ``internal`` and ``restricted``
(never published). An asset type whose readings could describe people
(``open_data.describes_people``, e.g. traffic counters) may not have a ``public``
metric: the check refuses it, so such data is aggregate-only unless someone
changes both the flag and the tier, in review.

Check files with ``python -m hub.catalog check [DIR]`` (exit 1 with
``file:line: key.path: message`` lines on any problem).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.durations import DurationSeconds
from hub.messages import ASSET_TYPE_RE, METRIC_RE, Reading
from hub.yamlfile import FileProblem, line_of, load_yaml, validation_messages

#: The catalog shipped with the package, found next to this module so it works installed.
DEFAULT_CATALOG_DIR = Path(__file__).resolve().parent

Classification = Literal["public", "public_aggregate", "internal", "restricted"]
#: Tiers whose values leave the hub through the open-data endpoints.
PUBLISHED_TIERS: frozenset[str] = frozenset({"public", "public_aggregate"})

#: Classification of a metric the catalog does not know: not public until someone says so.
UNKNOWN_CLASSIFICATION: Classification = "internal"


MetricName = Annotated[str, Field(pattern=f"^{METRIC_RE.pattern}$")]

#: Aggregate buckets must tile a day (a daily figure is whole buckets) and be at least this.
MIN_BUCKET_S = 60.0
DAY_S = 86_400


class AggregateSpec(BaseModel):
    """How a ``public_aggregate`` metric is published: cells of a district and time bucket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fewest devices a cell must aggregate to be published (smaller cells are suppressed).
    k: Annotated[int, Field(ge=2, le=1000)] = 5
    #: Shortest time bucket published; must divide a day.
    bucket: DurationSeconds = 3600.0
    #: How long after its bucket ends a cell is published.
    delay: Annotated[DurationSeconds, Field(ge=0, le=30 * DAY_S)] = 0.0

    @model_validator(mode="after")
    def _tiles_a_day(self) -> AggregateSpec:
        if self.bucket < MIN_BUCKET_S or self.bucket > DAY_S:
            raise ValueError(f"bucket must be from 1m to 1d, not {self.bucket:g} s")
        if self.bucket != int(self.bucket) or DAY_S % int(self.bucket):
            raise ValueError(
                f"bucket must divide a day evenly (e.g. 15m, 1h, 6h, 1d), not {self.bucket:g} s"
            )
        return self


class OpenDataSpec(BaseModel):
    """What an asset type's public output may show (``open_data:`` in its file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Readings of this asset type could describe people (counts of passers-by, vehicles):
    #: none of its metrics may be ``public``; ``public_aggregate`` at most.
    describes_people: bool = False
    #: Decimals of latitude and longitude in public output (3 is about 110 m).
    location_decimals: Annotated[int, Field(ge=0, le=5)] = 3
    #: Aggregation of this type's ``public_aggregate`` metrics (a metric may override it).
    aggregate: AggregateSpec = AggregateSpec()


class MetricSpec(BaseModel):
    """One metric of an asset type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["number", "bool"] = "number"
    unit: str = ""
    min: float | None = None
    max: float | None = None
    classification: Classification
    description: str = ""
    #: For ``public_aggregate``: this metric's own aggregation (else the asset type's).
    aggregate: AggregateSpec | None = None

    @model_validator(mode="after")
    def _range(self) -> MetricSpec:
        if self.aggregate is not None and self.classification != "public_aggregate":
            raise ValueError("aggregate applies to public_aggregate metrics only")
        if self.type == "bool":
            if self.min is not None or self.max is not None:
                raise ValueError("a bool metric has no min/max")
            return self
        if self.min is None or self.max is None:
            raise ValueError("a number metric needs both min and max (its plausible range)")
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite")
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class AssetTypeSpec(BaseModel):
    """One catalog file: an asset type and its metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    asset_type: Annotated[str, Field(pattern=f"^{ASSET_TYPE_RE.pattern}$")]
    description: str = ""
    interval: Annotated[DurationSeconds, Field(gt=0, description="expected reporting interval")]
    open_data: OpenDataSpec = OpenDataSpec()
    metrics: Annotated[dict[MetricName, MetricSpec], Field(min_length=1)]

    def aggregate(self, metric: str) -> AggregateSpec | None:
        """How ``metric`` is aggregated for publication, or None unless it is public_aggregate."""
        spec = self.metrics.get(metric)
        if spec is None or spec.classification != "public_aggregate":
            return None
        return spec.aggregate or self.open_data.aggregate


class Catalog:
    """The loaded catalog; lookups are dictionary reads, safe on the hot path."""

    def __init__(self, specs: Mapping[str, AssetTypeSpec]) -> None:
        self._specs = dict(specs)
        self._ranges: dict[str, dict[str, tuple[float, float]]] = {
            name: {
                metric: (m.min, m.max)
                for metric, m in spec.metrics.items()
                if m.min is not None and m.max is not None
            }
            for name, spec in self._specs.items()
        }
        self._classes: dict[tuple[str, str], str] = {
            (name, metric): m.classification
            for name, spec in self._specs.items()
            for metric, m in spec.metrics.items()
        }

    def asset_types(self) -> list[str]:
        """The asset types the catalog describes, sorted."""
        return sorted(self._specs)

    def spec(self, asset_type: str) -> AssetTypeSpec | None:
        """The full entry of ``asset_type``, or None."""
        return self._specs.get(asset_type)

    def expected_interval_s(self, asset_type: str) -> float | None:
        """Expected reporting interval in seconds, or None for an unknown asset type."""
        spec = self._specs.get(asset_type)
        return spec.interval if spec is not None else None

    def classification(self, asset_type: str, metric: str) -> str:
        """The metric's tier (``public``, ``public_aggregate``, ``internal`` or ``restricted``);
        ``internal`` when not in the catalog."""
        return self._classes.get((asset_type, metric), UNKNOWN_CLASSIFICATION)

    def plausible(self, asset_type: str, metric: str) -> tuple[float, float] | None:
        """The physically plausible (min, max) of a numeric metric, or None."""
        ranges = self._ranges.get(asset_type)
        return ranges.get(metric) if ranges is not None else None

    def flag(self, reading: Reading) -> Reading:
        """``reading`` marked ``quality="out_of_range"`` if a numeric value is implausible.

        Returns the same object when every value is plausible (the common case, on
        the hot path: one dict lookup per metric, no allocation). Booleans and metrics
        the catalog does not know are never flagged.
        """
        ranges = self._ranges.get(reading.asset_type)
        if ranges is None:
            return reading
        bad: list[str] | None = None
        for name, value in reading.metrics.items():
            bounds = ranges.get(name)
            if bounds is None or value.__class__ is bool:
                continue
            if value < bounds[0] or value > bounds[1]:
                if bad is None:
                    bad = []
                bad.append(name)
        if bad is None:
            return reading
        flagged = tuple(dict.fromkeys((*reading.out_of_range, *bad)))
        return dataclasses.replace(reading, quality="out_of_range", out_of_range=flagged)


def _load_dir(directory: Path) -> tuple[dict[str, AssetTypeSpec], list[str]]:
    specs: dict[str, AssetTypeSpec] = {}
    problems: list[str] = []
    if not directory.is_dir():
        return specs, [f"{directory}:1: not a folder of catalog files"]
    files = sorted(directory.glob("*.yaml"))
    if not files:
        problems.append(f"{directory}:1: no catalog files (*.yaml)")
    for path in files:
        try:
            document = load_yaml(path)
        except FileProblem as exc:
            problems.extend(exc.messages)
            continue
        try:
            spec = AssetTypeSpec.model_validate(document)
        except ValidationError as exc:
            problems.extend(validation_messages(path, document, exc))
            continue
        if spec.asset_type != path.stem:
            line = document.lc.key("asset_type")[0] + 1
            problems.append(
                f"{path}:{line}: asset_type: {spec.asset_type!r} must match the file name "
                f"({path.stem}.yaml)"
            )
            continue
        if spec.open_data.describes_people:
            public = [n for n, m in spec.metrics.items() if m.classification == "public"]
            for name in public:
                line = line_of(document, ("metrics", name, "classification"))
                problems.append(
                    f"{path}:{line}: metrics.{name}.classification: {spec.asset_type} "
                    "describes people (open_data.describes_people): its metrics may be "
                    "public_aggregate, internal or restricted, never public"
                )
            if public:
                continue
        specs[spec.asset_type] = spec
    return specs, problems


def check_catalog(directory: Path | None = None) -> list[str]:
    """Every problem of the catalog folder, as ``file:line: key.path: message``; [] if fine."""
    return _load_dir(directory or DEFAULT_CATALOG_DIR)[1]


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load and validate the catalog (default: the package's own); FileProblem if broken."""
    specs, problems = _load_dir(directory or DEFAULT_CATALOG_DIR)
    if problems:
        raise FileProblem(problems)
    return Catalog(specs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hub.catalog check [DIR]``: print problems, exit 1 if any."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "check" or len(args) > 2:
        print("usage: python -m hub.catalog check [DIR]", file=sys.stderr)
        return 2
    directory = Path(args[1]) if len(args) == 2 else DEFAULT_CATALOG_DIR
    problems = check_catalog(directory)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    catalog = load_catalog(directory)
    print(f"{directory}: {len(catalog.asset_types())} asset types ok")
    return 0
