"""WorldCover label source: tile naming, URLs, reprojection onto cube grids (local and HTTP)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from senland_geo.classes import WORLDCOVER
from senland_geo.worldcover import (
    PUBLIC_ROOT,
    TargetGrid,
    WorldCoverError,
    gdal_path,
    tile_url,
    tiles_for_bbox,
    worldcover_labels,
)

# São Tomé city and the forest behind it, with some ocean (tile N00E006), on UTM 32N.
SAOTOME_BBOX = (6.68, 0.30, 6.76, 0.36)
SAOTOME_EPSG = 32632
VALID = set(WORLDCOVER.codes) | {0}


@pytest.mark.parametrize(
    ("bbox", "tiles"),
    [
        ((6.4, 0.0, 6.8, 0.5), ["N00E006"]),
        ((-16.45, 12.42, -16.05, 12.72), ["N12W018"]),  # casamance
        ((-17.55, 14.60, -17.10, 14.90), ["N12W018"]),  # dakar
        ((-0.5, -0.5, 0.5, 0.5), ["S03W003", "S03E000", "N00W003", "N00E000"]),
        ((8.0, 2.0, 9.0, 3.0), ["N00E006"]),  # edges on the tile edge stay in one tile
        (
            (-1.6, 43.2, 8.1, 49.6),
            [f"N{la}{e}" for la in (42, 45, 48) for e in ("W003", "E000", "E003", "E006")],
        ),  # fmt: skip
    ],
)
def test_tiles_for_bbox(bbox, tiles):
    assert tiles_for_bbox(bbox) == tiles


def test_tile_urls_match_public_bucket():
    assert tile_url("N00E006") == (
        "https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map/"
        "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
    )
    assert tile_url("S48E036", version="2020") == (
        f"{PUBLIC_ROOT}/v100/2020/map/ESA_WorldCover_10m_2020_v100_S48E036_Map.tif"
    )
    assert tile_url("N12W018", tile_root="http://x:1/wc/") == (
        "http://x:1/wc/v200/2021/map/ESA_WorldCover_10m_2021_v200_N12W018_Map.tif"
    )
    assert gdal_path(tile_url("N00E006")).startswith("/vsicurl/https://")
    assert gdal_path("/data/a.tif") == "/data/a.tif"
    with pytest.raises(ValueError, match="2020, 2021"):
        tile_url("N00E006", version="2019")
    with pytest.raises(ValueError, match="west < east"):
        tiles_for_bbox((1, 0, 0, 1))


def test_target_grid_from_bounds_snaps_outward():
    g = TargetGrid.from_bounds((100.5, 200.5, 139.0, 229.0), 10.0, 32628)
    assert g.bounds == (100.0, 200.0, 140.0, 230.0)
    assert g.shape == (3, 4) and g.crs == "EPSG:32628"


def _check_nearest_exact(labels: np.ndarray, grid: TargetGrid, src_path: str, n: int = 300):
    """Every sampled output pixel equals the source pixel containing its centre."""
    rng = np.random.default_rng(0)
    rows = rng.integers(0, grid.shape[0], n)
    cols = rng.integers(0, grid.shape[1], n)
    t = grid.transform
    xs = t.c + (cols + 0.5) * t.a
    ys = t.f + (rows + 0.5) * t.e
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    with rasterio.open(src_path) as src:
        st = src.transform
        sc = (np.asarray(lon) - st.c) / st.a
        sr = (np.asarray(lat) - st.f) / st.e
        sr, sc = np.floor(sr).astype(int), np.floor(sc).astype(int)
        r0, c0 = sr.min(), sc.min()
        win = Window(c0, r0, sc.max() - c0 + 1, sr.max() - r0 + 1)
        block = src.read(1, window=win)
    expected = block[sr - r0, sc - c0]
    np.testing.assert_array_equal(labels[rows, cols], expected)


@pytest.fixture(scope="module")
def saotome_local(saotome_tile_root):
    grid = _saotome_grid()
    labels = worldcover_labels(grid=grid, tile_root=saotome_tile_root)
    return grid, labels


def _saotome_grid() -> TargetGrid:
    from rasterio.warp import transform_bounds

    utm = transform_bounds("EPSG:4326", f"EPSG:{SAOTOME_EPSG}", *SAOTOME_BBOX)
    return TargetGrid.from_bounds(utm, 10.0, SAOTOME_EPSG)


def test_saotome_local_codes_distribution_and_nearest(saotome_local, saotome_tile_root):
    grid, labels = saotome_local
    assert labels.dtype == np.uint8 and labels.shape == grid.shape
    codes, counts = np.unique(labels, return_counts=True)
    assert set(codes.tolist()) <= VALID
    frac = dict(zip(codes.tolist(), (counts / labels.size).tolist(), strict=True))
    # São Tomé: mostly rain forest, the city is built-up, the ocean is water.
    assert frac.get(10, 0) > 0.5
    assert 0.01 < frac.get(50, 0) < 0.3
    assert 0.05 < frac.get(80, 0) < 0.6
    assert frac.get(0, 0) < 0.05
    src = next(saotome_tile_root.rglob("*_Map.tif"))
    _check_nearest_exact(labels, grid, str(src))


def test_signature_variants_agree(saotome_local, saotome_tile_root):
    grid, labels = saotome_local
    by_bounds = worldcover_labels(
        epsg=SAOTOME_EPSG, resolution=10.0, bounds=grid.bounds, tile_root=saotome_tile_root
    )
    by_transform = worldcover_labels(
        epsg=SAOTOME_EPSG, transform=grid.transform, shape=grid.shape, tile_root=saotome_tile_root
    )
    by_bbox = worldcover_labels(SAOTOME_BBOX, SAOTOME_EPSG, 10.0, tile_root=saotome_tile_root)
    np.testing.assert_array_equal(by_bounds, labels)
    np.testing.assert_array_equal(by_transform, labels)
    np.testing.assert_array_equal(by_bbox, labels)
    da = worldcover_labels(grid=grid, tile_root=saotome_tile_root, as_dataarray=True)
    assert da.dims == ("y", "x") and da.rio.crs.to_epsg() == SAOTOME_EPSG
    assert da.attrs["tiles"] == "N00E006"
    np.testing.assert_array_equal(da.values, labels)
    assert float(da.x[0]) == grid.transform.c + 5.0


def test_saotome_over_http_reads_windows(saotome_local, range_server):
    grid, labels = saotome_local
    root = range_server.url_for("saotome")
    http = worldcover_labels(grid=grid, tile_root=root)
    np.testing.assert_array_equal(http, labels)
    gets = [r for r in range_server.requests if r.method == "GET"]
    assert gets and all(r.range and r.range.startswith("bytes=") for r in gets)
    assert all(r.status == 206 for r in gets)


def test_missing_tiles_are_nodata(saotome_tile_root, range_server):
    ocean = (3.2, 0.5, 3.25, 0.55)  # tile N00E003 is not in the root: open ocean
    assert worldcover_labels(ocean, 32631, 20.0, tile_root=saotome_tile_root).max() == 0
    http = worldcover_labels(ocean, 32631, 20.0, tile_root=range_server.url_for("saotome"))
    assert http.max() == 0
    assert any(r.method == "HEAD" and r.status == 404 for r in range_server.requests)
    with pytest.raises(ValueError, match="version"):
        worldcover_labels(ocean, 32631, version="2022", tile_root=saotome_tile_root)


def test_http_transient_error_is_retried(saotome_local, range_server):
    grid, labels = saotome_local
    range_server.faults.fail_next(1, status=503)
    out = worldcover_labels(grid=grid, tile_root=range_server.url_for("saotome"))
    np.testing.assert_array_equal(out, labels)
    assert range_server.requests[0].status == 503


def test_http_server_errors_raise(range_server, down_url):
    bbox = (6.70, 0.30, 6.71, 0.31)
    range_server.faults.fail_next(10, status=500)
    with pytest.raises(WorldCoverError, match="cannot reach"):
        worldcover_labels(bbox, SAOTOME_EPSG, tile_root=range_server.url_for("saotome"))
    with pytest.raises(WorldCoverError, match="cannot reach"):
        worldcover_labels(bbox, SAOTOME_EPSG, tile_root=down_url)


@pytest.mark.parametrize("name", ["casamance", "dakar"])
def test_fixture_labels_match_truth(senegal_data, range_server, name):
    info = senegal_data.set_info(name)
    grid = TargetGrid(
        rasterio.Affine(*info["transform_10m"]), tuple(info["shape_10m"]), "EPSG:32628"
    )
    root = range_server.url_for("senegal", info["worldcover_root"])
    labels = worldcover_labels(grid=grid, tile_root=root)
    with rasterio.open(senegal_data.root / info["truth"]) as src:
        truth = src.read(1)
    assert set(np.unique(labels).tolist()) == set(np.unique(truth).tolist())
    assert (labels == truth).mean() > 0.9  # 10 m UTM -> 1/12000 deg -> 10 m UTM, nearest
    local = worldcover_labels(
        grid=grid, version="2020", tile_root=senegal_data.root / info["worldcover_root"]
    )
    np.testing.assert_array_equal(local, labels)
