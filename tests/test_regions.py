import pytest

from senland_geo.classes import WORLDCOVER
from senland_geo.regions import Region, get_region


def test_builtin_regions_validate_and_use_utm28n():
    for name in ("dakar", "lac-de-guiers", "casamance", "sine-saloum"):
        r = get_region(name)
        assert r.epsg == 32628 and r.resolution == 10
        assert r.collections == ("sentinel-2-l2a",) and r.catalog == "earth-search"
        assert r.labels == "esa-worldcover-2021" and r.classes is WORLDCOVER
        w, s, e, n = r.bbox
        assert -18 < w < e < -15 and 12 < s < n < 17
        minx, miny, maxx, maxy = r.output_bounds()
        assert minx % 10 == 0 and maxy % 10 == 0
        assert 20_000 < maxx - minx < 80_000  # tens of km a side


def test_crop_regions():
    assert get_region("france-pastis").classes.name == "pastis"
    assert len(get_region("france-pastis").classes) == 19
    munich = get_region("munich")
    assert munich.epsg == 32632 and len(munich.classes) == 18


def test_brandenburg_grid_is_the_scene():
    r = get_region("brandenburg")
    assert r.output_bounds() == (330000.0, 5814360.0, 345360.0, 5822040.0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"bbox": (10, 0, 5, 1)}, "west < east"),
        ({"bbox": (-200, 0, 5, 1)}, "longitudes"),
        ({"bbox": (0, -95, 5, 1)}, "latitudes"),
        ({"bbox": (0, 1, 2)}, "4 numbers"),
        ({"epsg": 12}, "not an EPSG code"),
        ({"time_range": ("2021-12-31", "2021-01-01")}, "reversed"),
        ({"time_range": ("2021-13-01", "2021-12-31")}, "not an ISO date"),
        ({"bands": ("B02", "B99")}, "B99"),
        ({"name": "Bad Name"}, "lower-case"),
        ({"resolution": 0}, "positive"),
    ],
)
def test_bad_values_name_the_value(changes, match):
    base = dict(name="x", bbox=(0.0, 0.0, 1.0, 1.0), epsg=32631)
    with pytest.raises(ValueError, match=match):
        Region(**{**base, **changes})


def test_regions_are_frozen():
    r = get_region("dakar")
    with pytest.raises(AttributeError):
        r.epsg = 4326  # type: ignore[misc]
