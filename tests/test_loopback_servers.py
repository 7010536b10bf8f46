"""The loopback servers and fixtures behave like the real services they stand in for."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from senland_geo.regions import CASAMANCE, DAKAR, SINE_SALOUM

COLLECTION = "sentinel-2-l2a"
GDAL_HTTP = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": 0}


def _expected(senegal_data, name, max_cc=None):
    items = senegal_data.set_info(name)["items"]
    return sorted(i["id"] for i in items if max_cc is None or i["eo:cloud_cover"] < max_cc)


# -- fixture data -----------------------------------------------------------------------------
def test_fixture_data_layout(senegal_data):
    root = senegal_data.root
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 5_000_000
    assert senegal_data.seconds < 60
    items = senegal_data.items()
    assert {i["properties"]["senland:fixture_set"] for i in items} == {
        "casamance", "dakar", "sine-saloum",
    }  # fmt: skip
    keys = {"blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
            "swir16", "swir22", "scl"}  # fmt: skip
    for item in items:
        p = item["properties"]
        assert keys <= set(item["assets"])
        assert p["proj:epsg"] == 32628 and p["proj:code"] == "EPSG:32628"
        assert p["s2:mgrs_tile"] == p["grid:code"].removeprefix("MGRS-")
        assert 0 <= p["eo:cloud_cover"] <= 100
    cloudy = [i for i in items if i["properties"]["senland:fixture_set"] == "sine-saloum"]
    assert cloudy and all(i["properties"]["eo:cloud_cover"] > 80 for i in cloudy)
    assert senegal_data.set_info("sine-saloum")["all_cloudy"]


def test_fixture_cogs(senegal_data):
    item = senegal_data.items(sets=["casamance"])[0]
    info = senegal_data.set_info("casamance")
    for key, shape, dtype in (("blue", (256, 256), "uint16"), ("swir16", (128, 128), "uint16"),
                              ("scl", (128, 128), "uint8")):  # fmt: skip
        asset = item["assets"][key]
        with rasterio.open(asset["href"]) as src:
            assert src.crs.to_epsg() == 32628
            assert src.shape == shape == tuple(asset["proj:shape"])
            assert list(src.transform)[:6] == asset["proj:transform"]
            assert src.dtypes[0] == dtype and src.nodata == 0
            assert src.block_shapes[0] == (256, 256)
            assert src.overviews(1) == [2, 4]
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.compression.name.lower() == "deflate"
            data = src.read(1)
        if key == "scl":
            assert set(np.unique(data).tolist()) <= set(range(12))
            assert {4, 6} <= set(np.unique(data).tolist())
        else:
            assert 100 < np.median(data) < 6000
    # The 10 m grid is the manifest's and lies inside the region.
    assert item["assets"]["blue"]["proj:transform"] == info["transform_10m"]
    w, s, e, n = item["bbox"]
    rw, rs, re_, rn = CASAMANCE.bbox
    assert rw < w < e < re_ and rs < s < n < rn
    cloudy = senegal_data.items(sets=["sine-saloum"])
    for it in cloudy:
        with rasterio.open(it["assets"]["scl"]["href"]) as src:
            assert set(np.unique(src.read(1)).tolist()) <= {3, 8, 9, 10}


# -- STAC API ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_stac_search_bbox_datetime_query(stac_api, senegal_data, method):
    from pystac_client import Client

    client = Client.open(stac_api.url)
    search = client.search(
        collections=[COLLECTION],
        bbox=CASAMANCE.bbox,
        datetime=CASAMANCE.datetime,
        query={"eo:cloud_cover": {"lt": 20}},
        method=method,
    )
    ids = sorted(i.id for i in search.items())
    assert ids == _expected(senegal_data, "casamance", 20)
    assert 0 < len(ids) < len(_expected(senegal_data, "casamance"))
    # Assets keep their range-server hrefs.
    item = next(iter(client.search(ids=ids[:1], collections=[COLLECTION]).items()))
    assert item.assets["red"].href.startswith("http://127.0.0.1:")
    # Only part of the year.
    early = client.search(collections=[COLLECTION], bbox=DAKAR.bbox,
                          datetime="2021-01-01/2021-01-31", method=method)  # fmt: skip
    january = [i["id"] for i in senegal_data.set_info("dakar")["items"]
               if i["datetime"].startswith("2021-01")]  # fmt: skip
    assert [i.id for i in early.items()] == january


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_stac_cql2_json_filter(stac_api, senegal_data, method):
    from pystac_client import Client

    mgrs = senegal_data.set_info("dakar")["mgrs_tile"]
    flt = {
        "op": "and",
        "args": [
            {"op": "=", "args": [{"property": "s2:mgrs_tile"}, mgrs]},
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]},
        ],
    }
    search = Client.open(stac_api.url).search(
        collections=[COLLECTION], filter=flt, filter_lang="cql2-json", method=method
    )
    assert sorted(i.id for i in search.items()) == _expected(senegal_data, "dakar", 20)


def test_stac_every_scene_cloudy(stac_api, senegal_data):
    from pystac_client import Client

    client = Client.open(stac_api.url)
    kwargs = dict(collections=[COLLECTION], bbox=SINE_SALOUM.bbox, datetime=SINE_SALOUM.datetime)
    assert list(client.search(**kwargs, query={"eo:cloud_cover": {"lt": 20}}).items()) == []
    all_items = list(client.search(**kwargs).items())
    assert sorted(i.id for i in all_items) == _expected(senegal_data, "sine-saloum")


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_stac_pagination(stac_api, senegal_data, method):
    from pystac_client import Client

    total = len(stac_api.items)
    search = Client.open(stac_api.url).search(
        collections=[COLLECTION], limit=2, max_items=None, method=method,
        datetime="2021-01-01/2021-12-31",
    )  # fmt: skip
    sizes = [len(page.items) for page in search.pages()]
    assert sizes == [2] * (total // 2) + ([total % 2] if total % 2 else [])
    # The same with a bbox + query filter: next links keep them.
    search = Client.open(stac_api.url).search(
        collections=[COLLECTION], bbox=CASAMANCE.bbox, limit=1, method=method,
        query={"eo:cloud_cover": {"lt": 20}},
    )  # fmt: skip
    ids = [it.id for page in search.pages() for it in page.items]
    assert sorted(ids) == _expected(senegal_data, "casamance", 20) and len(ids) > 1


# -- range server -----------------------------------------------------------------------------
def test_cog_window_read_over_http(range_server, senegal_items, senegal_data):
    href = next(i for i in senegal_items if i["id"].startswith("S2A_28PCU"))["assets"]["nir"]
    url = href["href"]
    local = url.replace(range_server.url_for("senegal"), str(senegal_data.root))
    win = Window(64, 32, 48, 40)
    with rasterio.Env(**GDAL_HTTP), rasterio.open(f"/vsicurl/{url}") as src:
        assert src.crs.to_epsg() == 32628 and src.overviews(1) == [2, 4]
        data = src.read(1, window=win)
    with rasterio.open(local) as src:
        np.testing.assert_array_equal(data, src.read(1, window=win))
    gets = [r for r in range_server.requests if r.method == "GET"]
    assert gets and all(r.status == 206 and r.range for r in gets)


def test_range_requests(range_server, senegal_data):
    url = range_server.url_for("senegal", "manifest.json")
    size = (senegal_data.root / "manifest.json").stat().st_size
    r = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and len(r.content) == 10
    assert r.headers["content-range"] == f"bytes 10-19/{size}"
    assert httpx.get(url).content == (senegal_data.root / "manifest.json").read_bytes()


def test_fault_injection_modes(range_server):
    url = range_server.url_for("senegal", "manifest.json")
    range_server.faults.fail_next(2, status=500)
    assert [httpx.get(url).status_code for _ in range(3)] == [500, 500, 200]

    range_server.faults.truncate_next(1, after_bytes=100)
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
        httpx.get(url)
    assert httpx.get(url).status_code == 200  # the next one is whole again

    range_server.faults.slow(0.4, n=1)
    t0 = time.perf_counter()
    assert httpx.get(url).status_code == 200
    assert time.perf_counter() - t0 >= 0.4

    range_server.faults.fail_next(1, status=503, match="nothing-like-this")
    assert httpx.get(url).status_code == 200  # match limits faults to some paths
    faults = [r.fault for r in range_server.requests]
    assert faults[:4] == ["error", "error", None, "truncate"]


def test_gdal_sees_faults(range_server, senegal_items):
    url = senegal_items[0]["assets"]["blue"]["href"]
    range_server.faults.fail_next(50, status=500)
    with rasterio.Env(**GDAL_HTTP), pytest.raises(rasterio.errors.RasterioIOError):
        rasterio.open(f"/vsicurl/{url}")


# -- flaky STAC API and down endpoint ---------------------------------------------------------
def test_flaky_stac_api_recovers(flaky_stac_api, stac_api):
    flaky_stac_api.faults.fail_next(2)
    codes = [httpx.get(f"{flaky_stac_api.url}/collections").status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    body = httpx.post(f"{flaky_stac_api.url}/search", json={"limit": 1}).json()
    nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
    assert nxt and nxt[0].startswith(flaky_stac_api.url)  # links point at the proxy


def test_flaky_stac_api_with_pystac_client(flaky_stac_api, senegal_data):
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    flaky_stac_api.faults.fail_next(1, match="/search")
    client = Client.open(flaky_stac_api.url)
    search = client.search(collections=[COLLECTION], bbox=DAKAR.bbox)
    with pytest.raises(APIError):
        list(search.items())
    assert sorted(i.id for i in search.items()) == _expected(senegal_data, "dakar")


def test_down_url_refuses(down_url):
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{down_url}/collections", timeout=2)
