"""Distances on the Earth and a grid index of points (devices) to find those near a place.

Distances are great-circle (haversine) on a sphere of the Earth's mean radius: within
0.5 % of the ellipsoid, far below how well a citizen places a report on a map. The
index files points in cells of about ``cell_m`` and looks only at the cells a circle
can touch, so finding the devices near a report costs the devices nearby, not the fleet.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

#: Mean radius of the Earth (IUGG), metres.
EARTH_RADIUS_M = 6_371_008.8
#: Metres per degree of latitude (and of longitude at the equator).
M_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180

K = TypeVar("K", bound=Hashable)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


class PointIndex(Generic[K]):
    """Points by key in a latitude/longitude grid; :meth:`near` finds those in a circle."""

    def __init__(self, cell_m: float = 1000.0) -> None:
        self._deg = cell_m / M_PER_DEGREE
        self._cells: dict[tuple[int, int], list[tuple[K, float, float]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / self._deg), math.floor(lon / self._deg)

    def add(self, key: K, lat: float, lon: float) -> None:
        """File ``key`` at ``lat``/``lon``."""
        self._cells.setdefault(self._cell(lat, lon), []).append((key, lat, lon))
        self._size += 1

    def extend(self, points: Iterable[tuple[K, float, float]]) -> None:
        """File every (key, lat, lon) of ``points``."""
        for key, lat, lon in points:
            self.add(key, lat, lon)

    def near(self, lat: float, lon: float, radius_m: float) -> list[tuple[float, K]]:
        """(distance in metres, key) of every point within ``radius_m``, nearest first."""
        if not self._cells:
            return []
        span_lat = radius_m / M_PER_DEGREE
        # A degree of longitude shrinks with the cosine of the latitude; near the
        # poles the search widens to every longitude rather than divide by ~0.
        cos = math.cos(math.radians(min(89.0, abs(lat) + span_lat)))
        span_lon = 180.0 if cos < 1e-3 else min(180.0, span_lat / cos)
        row0, col0 = self._cell(lat - span_lat, lon - span_lon)
        row1, col1 = self._cell(lat + span_lat, lon + span_lon)
        found: list[tuple[float, K]] = []
        cells: list[list[tuple[K, float, float]]]
        if (row1 - row0 + 1) * (col1 - col0 + 1) > len(self._cells):
            cells = list(self._cells.values())
        else:
            grid = self._cells
            keys = ((r, c) for r in range(row0, row1 + 1) for c in range(col0, col1 + 1))
            cells = [grid[k] for k in keys if k in grid]
        for cell in cells:
            for key, plat, plon in cell:
                d = distance_m(lat, lon, plat, plon)
                if d <= radius_m:
                    found.append((d, key))
        found.sort(key=lambda item: item[0])
        return found
