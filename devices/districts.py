"""Outlines of the demo city's districts, as the GeoJSON file a city would supply.

``python -m devices.districts > devices/scenarios/demo-districts.geojson`` writes
the file ``hub demo`` hands the console (``HUB_CONSOLE__DISTRICTS_GEOJSON``): one
polygon per district ``d01..d08``, the Voronoi cells of the simulator's district
centres (:func:`devices.simulator.district_centre`) inside a round city limit, so
every simulated device lies inside its own district. A real city supplies its own
file (docs/console.md).
"""

from __future__ import annotations

import json
import math
import sys

from devices.simulator import CITY_CENTRE, district_centre

#: Radius of the demo city's limit, in km from the centre.
CITY_RADIUS_KM = 4.6
_KM_LAT = 111.32

Point = tuple[float, float]  # (x km east, y km north) of the city centre


def _clip(polygon: list[Point], a: Point, b: Point) -> list[Point]:
    """The part of ``polygon`` closer to ``a`` than to ``b`` (one Sutherland-Hodgman step)."""
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    nx, ny = b[0] - a[0], b[1] - a[1]

    def inside(p: Point) -> bool:
        return (p[0] - mx) * nx + (p[1] - my) * ny <= 0

    out: list[Point] = []
    for i, cur in enumerate(polygon):
        prev = polygon[i - 1]
        if inside(cur) != inside(prev):
            dx, dy = cur[0] - prev[0], cur[1] - prev[1]
            t = ((mx - prev[0]) * nx + (my - prev[1]) * ny) / (dx * nx + dy * ny)
            out.append((prev[0] + t * dx, prev[1] + t * dy))
        if inside(cur):
            out.append(cur)
    return out


def outlines(districts: int = 8) -> dict[str, object]:
    """A GeoJSON FeatureCollection with one polygon per district (property ``district``)."""
    lat0, lon0 = CITY_CENTRE
    km_lon = _KM_LAT * math.cos(math.radians(lat0))
    centres = []
    for n in range(1, districts + 1):
        lat, lon = district_centre(n, districts)
        centres.append(((lon - lon0) * km_lon, (lat - lat0) * _KM_LAT))
    limit = [
        (
            CITY_RADIUS_KM * math.cos(2 * math.pi * i / 72),
            CITY_RADIUS_KM * math.sin(2 * math.pi * i / 72),
        )
        for i in range(72)
    ]
    features = []
    for n, centre in enumerate(centres, start=1):
        cell = limit
        for other in centres:
            if other != centre:
                cell = _clip(cell, centre, other)
        ring = [[round(lon0 + x / km_lon, 6), round(lat0 + y / _KM_LAT, 6)] for x, y in cell]
        ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "properties": {"district": f"d{n:02d}", "name": f"District {n}"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def main() -> int:
    """Print the demo's district outlines as GeoJSON."""
    json.dump(outlines(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
