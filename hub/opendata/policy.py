"""The open-data policy: what of each metric may leave the hub, derived from the catalog.

Every public response is built from this object and nothing else decides what is
published: a metric the policy does not list is never named, and its values are
never read for a public answer. The policy is the catalog's tiers (``public``
device by device, ``public_aggregate`` as cells of at least ``k`` devices per
district and bucket after a delay) plus each asset type's location precision.

**Version.** The policy's version is derived, not declared: the first 12 hex
digits of the SHA-256 of everything in it that decides what is published (tiers,
units, ``k``, buckets, delays, precisions, ``describes_people``). It cannot be
forgotten when the catalog changes, it is the same on every worker of a cluster
and across restarts, and two catalogs that publish the same thing have the same
version. Every public response names it (``Open-Data-Policy-Version`` header, and a
field of the documents that have fields), and the release log records it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from hub.catalog import PUBLISHED_TIERS, AggregateSpec, Catalog

Tier = Literal["public", "public_aggregate"]

#: The HTTP header every open-data response carries.
POLICY_HEADER = "Open-Data-Policy-Version"


@dataclass(frozen=True, slots=True)
class PublishedMetric:
    """A metric the policy publishes, with everything a public answer says about it."""

    asset_type: str
    metric: str
    tier: Tier
    type: Literal["number", "bool"]
    unit: str
    description: str
    #: How it is aggregated (``public_aggregate`` only).
    aggregate: AggregateSpec | None

    @property
    def k(self) -> int:
        """Fewest devices a published cell aggregates (1 for device-level metrics)."""
        return self.aggregate.k if self.aggregate is not None else 1

    @property
    def bucket_ms(self) -> int:
        """Length of a published cell (aggregate metrics only; 0 otherwise)."""
        return int(self.aggregate.bucket * 1000) if self.aggregate is not None else 0

    @property
    def delay_ms(self) -> int:
        """How long after its bucket ends a cell is published (0 for device-level)."""
        return int(self.aggregate.delay * 1000) if self.aggregate is not None else 0


class OpenDataPolicy:
    """The tiers and precisions of the catalog, as the open-data endpoints apply them."""

    def __init__(self, catalog: Catalog) -> None:
        self._metrics: dict[str, dict[str, PublishedMetric]] = {}
        self._decimals: dict[str, int] = {}
        self._descriptions: dict[str, str] = {}
        self._people: dict[str, bool] = {}
        for asset_type in catalog.asset_types():
            spec = catalog.spec(asset_type)
            if spec is None:
                continue
            published = {
                name: PublishedMetric(
                    asset_type=asset_type,
                    metric=name,
                    tier="public" if m.classification == "public" else "public_aggregate",
                    type=m.type,
                    unit=m.unit,
                    description=m.description,
                    aggregate=spec.aggregate(name),
                )
                for name, m in sorted(spec.metrics.items())
                if m.classification in PUBLISHED_TIERS
            }
            if not published:
                continue  # nothing of this asset type is published: it is never named
            self._metrics[asset_type] = published
            self._decimals[asset_type] = spec.open_data.location_decimals
            self._descriptions[asset_type] = spec.description
            self._people[asset_type] = spec.open_data.describes_people
        self.version = hashlib.sha256(orjson.dumps(self.describe())).hexdigest()[:12]

    def asset_types(self) -> list[str]:
        """Asset types with at least one published metric, sorted."""
        return sorted(self._metrics)

    def metrics(self, asset_type: str, tier: Tier | None = None) -> list[PublishedMetric]:
        """The published metrics of ``asset_type`` (of one tier if given), by name."""
        found = self._metrics.get(asset_type, {}).values()
        return [m for m in found if tier is None or m.tier == tier]

    def metric(self, asset_type: str, metric: str) -> PublishedMetric | None:
        """``metric`` of ``asset_type`` if the policy publishes it, else None."""
        return self._metrics.get(asset_type, {}).get(metric)

    def device_level_types(self) -> list[str]:
        """Asset types with metrics published device by device (their devices are Things)."""
        return [a for a in self.asset_types() if self.metrics(a, "public")]

    def aggregate_types(self) -> list[str]:
        """Asset types with metrics published only as aggregates."""
        return [a for a in self.asset_types() if self.metrics(a, "public_aggregate")]

    def description(self, asset_type: str) -> str:
        """The catalog's description of a published asset type."""
        return self._descriptions.get(asset_type, "")

    def decimals(self, asset_type: str) -> int:
        """Decimals of latitude and longitude in public output for ``asset_type``."""
        return self._decimals.get(asset_type, 0)

    def coarsen(self, asset_type: str, latitude: float, longitude: float) -> tuple[float, float]:
        """A location rounded to the asset type's public precision (0 decimals if unknown)."""
        places = self.decimals(asset_type)
        return round(latitude, places) + 0.0, round(longitude, places) + 0.0

    def describe(self) -> dict[str, Any]:
        """The policy as data: per asset type its precision and published metrics."""
        return {
            asset_type: {
                "describes_people": self._people[asset_type],
                "location_decimals": self._decimals[asset_type],
                "metrics": {m.metric: _metric_terms(m) for m in metrics.values()},
            }
            for asset_type, metrics in sorted(self._metrics.items())
        }


def _metric_terms(m: PublishedMetric) -> Mapping[str, Any]:
    terms: dict[str, Any] = {"tier": m.tier, "type": m.type, "unit": m.unit}
    if m.aggregate is not None:
        terms.update(
            k=m.aggregate.k, bucket_s=int(m.aggregate.bucket), delay_s=int(m.aggregate.delay)
        )
    return terms
