"""Point-in-area geometry for choosing SMS/email recipients by where they live."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approvals.alert import Area, Circle
from channels.geo import (
    EARTH_RADIUS_KM,
    bounding_box,
    distance_km,
    has_shapes,
    in_areas,
    in_circle,
    in_polygon,
)
from tests.channels import samples

TRIANGLE = ((38.0, -122.0), (38.1, -122.0), (38.1, -121.9), (38.0, -122.0))
# A "U": the notch between the arms (lat 38.05..38.1, lon -121.97..-121.93) is outside.
U_SHAPE = (
    (38.0, -122.0),
    (38.1, -122.0),
    (38.1, -121.97),
    (38.05, -121.97),
    (38.05, -121.93),
    (38.1, -121.93),
    (38.1, -121.9),
    (38.0, -121.9),
    (38.0, -122.0),
)
KM_PER_DEGREE_LAT = 111.195


def test_haversine_distances() -> None:
    assert distance_km(38.0, -122.0, 38.0, -122.0) == 0.0
    assert distance_km(38.0, -122.0, 38.1, -122.0) == pytest.approx(11.12, abs=0.01)
    # London to Paris, a figure anyone can look up.
    assert distance_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(343.5, abs=1.0)


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((38.08, -121.98), True),
        ((38.02, -121.92), False),  # the other side of the diagonal
        ((38.0, -122.0), True),  # a corner
        ((38.05, -122.0), True),  # on an edge: better warned than missed
        ((38.05, -121.95), True),  # on the diagonal edge
        ((38.2, -121.95), False),
        ((37.9, -122.05), False),
    ],
)
def test_triangle(point: tuple[float, float], inside: bool) -> None:
    assert in_polygon(*point, TRIANGLE) is inside


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((38.02, -121.95), True),  # the base of the U
        ((38.08, -121.99), True),  # the left arm
        ((38.08, -121.91), True),  # the right arm
        ((38.08, -121.95), False),  # the notch
    ],
)
def test_concave_polygon(point: tuple[float, float], inside: bool) -> None:
    assert in_polygon(*point, U_SHAPE) is inside


def test_circle_edge_by_distance() -> None:
    circle = Circle(lat=38.05, lon=-121.95, radius_km=2.5)
    assert in_circle(38.05, -121.95, circle)
    assert in_circle(38.05 + 2.4 / KM_PER_DEGREE_LAT, -121.95, circle)
    assert not in_circle(38.05 + 2.6 / KM_PER_DEGREE_LAT, -121.95, circle)


def test_areas_combine_polygons_and_circles_and_ignore_geocodes() -> None:
    area = Area.model_validate(samples.AREA)
    assert in_areas(38.08, -121.98, [area])  # in the polygon
    assert in_areas(38.04, -121.94, [area])  # in the circle, outside the polygon
    assert not in_areas(38.2, -121.5, [area])
    codes_only = Area(description="Riverside", geocodes=area.geocodes)
    assert not has_shapes([codes_only])
    assert not in_areas(38.08, -121.98, [codes_only])
    assert has_shapes([codes_only, area])


def test_bounding_box_needs_a_shape_and_stays_away_from_the_antimeridian() -> None:
    assert bounding_box([Area(description="nowhere")]) is None
    fiji = Area(description="Fiji", circles=(Circle(lat=-17.7, lon=179.99, radius_km=50),))
    assert bounding_box([fiji]) is None


_AREA = Area(
    description="mixed",
    polygons=(TRIANGLE, U_SHAPE),
    circles=(Circle(lat=38.3, lon=-121.6, radius_km=12.0), Circle(lat=60.0, lon=20.0, radius_km=3)),
)


@given(
    lat=st.floats(min_value=37.5, max_value=60.5),
    lon=st.floats(min_value=-122.5, max_value=20.5),
)
def test_the_bounding_box_never_leaves_out_a_point_in_the_area(lat: float, lon: float) -> None:
    # The database filters by this box before the exact test: it may keep too many, never too few.
    box = bounding_box([_AREA])
    assert box is not None
    if in_areas(lat, lon, [_AREA]):
        assert box.min_lat <= lat <= box.max_lat
        assert box.min_lon <= lon <= box.max_lon


def _destination(lat: float, lon: float, bearing: float, km: float) -> tuple[float, float]:
    """The point `km` from (lat, lon) on `bearing` degrees (spherical Earth)."""
    phi, lam, theta = math.radians(lat), math.radians(lon), math.radians(bearing)
    delta = km / EARTH_RADIUS_KM
    phi2 = math.asin(
        math.sin(phi) * math.cos(delta) + math.cos(phi) * math.sin(delta) * math.cos(theta)
    )
    lam2 = lam + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi),
        math.cos(delta) - math.sin(phi) * math.sin(phi2),
    )
    return math.degrees(phi2), math.degrees(lam2)


@pytest.mark.parametrize("centre_lat", [0.0, 38.05, 60.0, -70.0])
def test_points_just_inside_a_circles_rim_are_in_its_box(centre_lat: float) -> None:
    circle = Circle(lat=centre_lat, lon=20.0, radius_km=3.0)
    box = bounding_box([Area(description="c", circles=(circle,))])
    assert box is not None
    for bearing in range(0, 360, 5):
        lat, lon = _destination(circle.lat, circle.lon, bearing, 2.999)
        assert in_circle(lat, lon, circle)
        assert box.min_lat <= lat <= box.max_lat, bearing
        assert box.min_lon <= lon <= box.max_lon, bearing
