"""The integer median composites equal the float32 xarray medians they replace, bit for bit."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from senland_geo import composite
from senland_geo.cube import (
    SCL_INVALID,
    composite_median,
    composite_monthly,
    valid_mask,
)

pytestmark = pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")  # reference


# The implementations before the integer composites (senland-geo e053b35), kept as the
# reference: float32, NaN where masked or 0, xarray's median, fillna(0), round, uint16.
def reference_median(cube: xr.DataArray) -> xr.DataArray:
    cube = cube.chunk({"time": -1})
    valid = valid_mask(cube)
    bands = cube.drop_sel(band="SCL") if "SCL" in cube["band"] else cube
    if bands.sizes["time"] == 1:
        out = bands.where(valid, 0)
    else:
        masked = bands.astype("float32").where(valid & (bands != 0))
        out = (
            masked.median("time", skipna=True)
            .fillna(0)
            .round()
            .expand_dims(time=[bands["time"].values[0]])
        )
    return out.astype("uint16").transpose("time", "band", "y", "x")


def reference_monthly(cube: xr.DataArray) -> xr.DataArray:
    cube = cube.chunk({"time": -1})
    valid = valid_mask(cube)
    bands = cube.drop_sel(band="SCL") if "SCL" in cube["band"] else cube
    masked = bands.astype("float32").where(valid & (bands != 0))
    out = masked.resample(time="MS").median(skipna=True).fillna(0).round().astype("uint16")
    return out.transpose("time", "band", "y", "x")


def random_cube(
    rng: np.random.Generator, dates: list[str], *, scl: bool = True, high: int = 12
) -> xr.DataArray:
    """A cube with many ties, zeros, masked and all-invalid pixels, chunked 8 x 8."""
    n, size = len(dates), 16
    bands = ["B02", "B03", "B04"]
    values = rng.integers(0, high, (n, len(bands), size, size)).astype(np.uint16)
    values[rng.random(values.shape) < 0.05] = 65535  # saturated (the masking sentinel)
    values[:, :, 0, :] = 0  # a row never observed
    layers = [values]
    if scl:
        codes = np.array([4, 5, 6, 7, *SCL_INVALID], dtype=np.uint16)
        scl_band = codes[rng.integers(0, len(codes), (n, 1, size, size))]
        scl_band[:, :, 1, :] = 8  # a row always cloudy
        scl_band[:, :, 2, :4] = 4  # clear but with zero reflectance in row 0 ... and row 2:
        values[:, :, 2, :4] = 0
        layers.append(scl_band)
        bands = [*bands, "SCL"]
    data = np.concatenate(layers, axis=1)
    cube = xr.DataArray(
        da.from_array(data, chunks=(1, 1, 8, 8)),
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array(dates, dtype="datetime64[ns]"),
            "band": bands,
            "y": 1000.0 - 10 * np.arange(size),
            "x": 500.0 + 10 * np.arange(size),
        },
    )
    return cube.rio.write_crs("EPSG:32628")


@pytest.mark.parametrize("n_time", [1, 2, 3, 4, 5, 8, 12, 13])
@pytest.mark.parametrize("scl", [True, False])
def test_median_matches_xarray_bit_for_bit(n_time, scl):
    rng = np.random.default_rng([n_time, scl])
    dates = [f"2021-{1 + i % 12:02d}-{1 + i:02d}" for i in range(n_time)]
    for high in (12, 65536):  # many ties and x.5 means; the whole uint16 range
        cube = random_cube(rng, dates, scl=scl, high=high)
        got = composite_median(cube)
        want = reference_median(cube)
        assert got.dtype == np.uint16 and got.dims == want.dims
        assert got.shape == (1, 3, 16, 16)
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got["time"].values, want["time"].values)
        assert list(got["band"].values) == ["B02", "B03", "B04"]
        assert got.rio.crs.to_epsg() == 32628
        assert (got.values[:, :, 0] == 0).all()  # never observed
        if scl:
            assert (got.values[:, :, 1] == 0).all()  # always cloudy
        if n_time > 1 and high == 12:
            assert (got.values > 0).mean() > 0.3  # not trivially zero


def test_median_rounds_half_to_even_and_skips_masked():
    values = np.array([[3, 4], [5, 6], [0, 9], [1, 7]], dtype=np.uint16)  # (time, pixel)
    use = np.array([[1, 1], [1, 1], [0, 1], [1, 1]], dtype=bool)
    # pixel 0: {3, 5, 1} -> 3; pixel 1: {4, 6, 9, 7} -> (6 + 7) / 2 = 6.5 -> 6
    np.testing.assert_array_equal(composite.median_of(values, use), [3, 6])
    pair = np.array([[1, 2, 65535, 0], [2, 3, 65534, 0]], dtype=np.uint16)
    got = composite.median_of(pair, pair != 0)  # 1.5 -> 2, 2.5 -> 2, 65534.5 -> 65534
    np.testing.assert_array_equal(got, [2, 2, 65534, 0])


def test_sorting_networks_sort_every_input():
    """0-1 principle: a network sorting every 0/1 sequence of length n sorts everything."""
    for n in range(1, composite.NETWORK_MAX + 1):
        pairs = composite.sorting_network(n)
        assert all(0 <= i < j < n for i, j in pairs)
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # every 0/1 input, (2^n, n)
        planes = [np.ascontiguousarray(bits[:, k], dtype=np.uint16) for k in range(n)]
        composite._sort_planes(planes, np.empty_like(planes[0]))
        np.testing.assert_array_equal(np.stack(planes, axis=1), np.sort(bits, axis=1))
    assert len(composite.sorting_network(4)) == 5 and len(composite.sorting_network(8)) == 19


def test_monthly_matches_xarray_bit_for_bit_with_empty_months():
    rng = np.random.default_rng(7)
    dates = ["2021-01-03", "2021-01-13", "2021-01-23", "2021-02-02", "2021-04-11", "2021-04-21"]
    cube = random_cube(rng, dates)
    got = composite_monthly(cube)
    want = reference_monthly(cube)
    np.testing.assert_array_equal(got["time"].values, want["time"].values)
    assert got.sizes["time"] == 4  # January to April, March empty
    np.testing.assert_array_equal(got.values, want.values)
    assert (got.values[2] == 0).all()


def test_composite_is_lazy_one_task_per_chunk():
    cube = random_cube(np.random.default_rng(1), ["2021-01-01", "2021-01-05", "2021-02-01"])
    got = composite_median(cube)
    assert isinstance(got.data, da.Array)
    assert got.data.chunks == ((1,), (3,), (8, 8), (8, 8))
    whole = cube.chunk({"time": -1, "band": -1})
    layer = got.data.__dask_graph__().layers[got.data.name]
    assert len(layer) == whole.data.npartitions == 4
