"""Is a point inside an alert's area? Pure geometry on CAP shapes (approvals.alert.Area).

Points are (latitude, longitude) in WGS 84 degrees, as in CAP. Polygons use ray casting on the
plain lat/lon plane: exact enough for county-sized areas, and what CAP consumers do. Circles use
the haversine great-circle distance. A point on a polygon's edge counts as inside: for a warning
it is better to reach someone on the boundary than to miss them. Geocodes (SAME, FIPS) name
areas without shapes; they cannot be tested here, so an area with only geocodes contains no point.

Limitation: a polygon that crosses the antimeridian (longitude ±180) is not handled; such areas
are rare for one agency and should be drawn as two polygons.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from approvals.alert import Area, Circle

__all__ = [
    "EARTH_RADIUS_KM",
    "BoundingBox",
    "bounding_box",
    "distance_km",
    "has_shapes",
    "in_areas",
    "in_circle",
    "in_polygon",
]

# IUGG mean Earth radius.
EARTH_RADIUS_KM: Final = 6371.0088
_KM_PER_DEGREE_LAT: Final = math.pi * EARTH_RADIUS_KM / 180.0
# Points closer to an edge than this (degrees, about 1 cm) are on it; absorbs float rounding.
_EDGE_TOLERANCE: Final = 1e-7


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points (haversine formula)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def in_circle(lat: float, lon: float, circle: Circle) -> bool:
    return distance_km(lat, lon, circle.lat, circle.lon) <= circle.radius_km


def _on_segment(lat: float, lon: float, a: tuple[float, float], b: tuple[float, float]) -> bool:
    (lat1, lon1), (lat2, lon2) = a, b
    cross = (lat2 - lat1) * (lon - lon1) - (lon2 - lon1) * (lat - lat1)
    if abs(cross) > _EDGE_TOLERANCE * max(1.0, abs(lat2 - lat1) + abs(lon2 - lon1)):
        return False
    return (
        min(lat1, lat2) - _EDGE_TOLERANCE <= lat <= max(lat1, lat2) + _EDGE_TOLERANCE
        and min(lon1, lon2) - _EDGE_TOLERANCE <= lon <= max(lon1, lon2) + _EDGE_TOLERANCE
    )


def in_polygon(lat: float, lon: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Ray casting (even-odd rule); `polygon` is closed (first point repeated last), as CAP's."""
    inside = False
    for a, b in itertools.pairwise(polygon):
        if _on_segment(lat, lon, a, b):
            return True
        (lat1, lon1), (lat2, lon2) = a, b
        # Does a ray from the point towards increasing longitude cross edge a-b?
        if (lat1 > lat) != (lat2 > lat):
            crossing_lon = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < crossing_lon:
                inside = not inside
    return inside


def _in_area(lat: float, lon: float, area: Area) -> bool:
    return any(in_polygon(lat, lon, polygon) for polygon in area.polygons) or any(
        in_circle(lat, lon, circle) for circle in area.circles
    )


def in_areas(lat: float, lon: float, areas: Iterable[Area]) -> bool:
    """True when the point lies in any polygon or circle of any of the areas."""
    return any(_in_area(lat, lon, area) for area in areas)


def has_shapes(areas: Iterable[Area]) -> bool:
    """True when at least one area has a polygon or a circle (something a point can be in)."""
    return any(area.polygons or area.circles for area in areas)


@dataclass(frozen=True)
class BoundingBox:
    """Latitude and longitude ranges that contain every shape: a cheap first filter (e.g. in SQL)
    before the exact test."""

    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float


def bounding_box(areas: Iterable[Area]) -> BoundingBox | None:
    """The box around every polygon and circle, or None when there is no shape or a circle reaches
    a pole or the antimeridian (then a plain lat/lon box would wrongly leave points out)."""
    lats: list[float] = []
    lons: list[float] = []
    for area in areas:
        for polygon in area.polygons:
            lats.extend(point[0] for point in polygon)
            lons.extend(point[1] for point in polygon)
        for circle in area.circles:
            # Widen a little beyond the exact box so rounding never leaves a point on the rim out.
            d_lat = circle.radius_km / _KM_PER_DEGREE_LAT * 1.01
            if abs(circle.lat) + d_lat >= 89.0:
                return None
            d_lon = d_lat / math.cos(math.radians(abs(circle.lat) + d_lat))
            if abs(circle.lon) + d_lon >= 180.0:
                return None
            lats.extend((circle.lat - d_lat, circle.lat + d_lat))
            lons.extend((circle.lon - d_lon, circle.lon + d_lon))
    if not lats:
        return None
    return BoundingBox(min(lats), max(lats), min(lons), max(lons))
