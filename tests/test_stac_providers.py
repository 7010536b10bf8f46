"""STAC providers and search against real servers on loopback and recorded real responses."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import yaml

from senland_geo import cube, stac
from senland_geo.errors import UserError
from senland_geo.regions import CASAMANCE, DAKAR, SINE_SALOUM, Region

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "stac-responses"
CASSETTES = SHARED / "pystac-client-cassettes"
ODC_ITEMS = SHARED / "odc-stac-items"
FAST = stac.RetryPolicy(retries=3, connect_retries=0, backoff=0.05, timeout=(2.0, 5.0))


def _expected(senegal_data, name, max_cc=None):
    items = senegal_data.set_info(name)["items"]
    return sorted(i["id"] for i in items if max_cc is None or i["eo:cloud_cover"] < max_cc)


def _recorded_features(cassette: str, collection: str) -> list[dict]:
    """Item dicts of ``collection`` in the JSON bodies recorded in a vcrpy cassette."""
    data = yaml.safe_load((CASSETTES / cassette).read_text())
    out: dict[str, dict] = {}
    for exchange in data["interactions"]:
        try:
            body = json.loads(exchange["response"]["body"]["string"])
        except (TypeError, ValueError):
            continue
        if body.get("type") == "FeatureCollection":
            for f in body["features"]:
                if f.get("collection") == collection and "assets" in f:
                    out[f["id"]] = f
    return list(out.values())


# -- providers ---------------------------------------------------------------------------------
def test_provider_profiles_and_catalog_kinds(tmp_path, senegal_data):
    profiles = stac.providers()
    assert profiles["earth-search"].url == "https://earth-search.aws.element84.com/v1"
    assert profiles["planetary-computer"].signing == "planetary-computer"
    assert stac.PROVIDERS["planetary-computer"].endswith("/api/stac/v1")
    ref = stac.resolve_catalog("earth-search")
    assert (ref.is_api, ref.kind, ref.provider) == (True, "api", "earth-search")
    assert stac.resolve_catalog("http://127.0.0.1:9/api/").href == "http://127.0.0.1:9/api"
    items_file = tmp_path / "items.json"
    items_file.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert stac.resolve_catalog(str(items_file)).kind == "items"
    with pytest.raises(UserError, match="not a known provider"):
        stac.resolve_catalog("nope-provider")


def test_items_file_catalog(senegal_data, tmp_path):
    path = tmp_path / "casamance.json"
    feats = senegal_data.items(sets=["casamance", "dakar"])
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    items = stac.search(CASAMANCE, str(path), max_cloud=20)
    assert sorted(i.id for i in items) == _expected(senegal_data, "casamance", 20)
    assert {"B02", "B8A", "B12", "SCL"} <= set(items[0].assets)


def test_geoparquet_catalog(senegal_data, tmp_path):
    rustac = pytest.importorskip("rustac")
    path = tmp_path / "items.parquet"
    rustac.write_sync(str(path), senegal_data.items(sets=["dakar", "casamance"]))
    assert stac.resolve_catalog(str(path)).kind == "geoparquet"
    items = stac.search(DAKAR, str(path))
    assert sorted(i.id for i in items) == _expected(senegal_data, "dakar")
    assert items[0].properties["proj:epsg"] == 32628 and "SCL" in items[0].assets


# -- loopback STAC API -------------------------------------------------------------------------
def test_search_loopback_api(stac_api, senegal_data, range_server):
    items = stac.search(CASAMANCE, stac_api.url, max_cloud=20, retry=FAST)
    assert sorted(i.id for i in items) == _expected(senegal_data, "casamance", 20)
    assert [i.datetime for i in items] == sorted(i.datetime for i in items)
    assert set(CASAMANCE.bands) | {"SCL"} <= set(items[0].assets)
    assert items[0].assets["B04"].href.startswith(range_server.url)
    # Pagination: one item per page still gives them all.
    all_items = stac.search(CASAMANCE, stac_api.url, retry=FAST)
    assert len(all_items) == len(_expected(senegal_data, "casamance"))


def test_api_500_then_recovers(flaky_stac_api, senegal_data):
    flaky_stac_api.faults.fail_next(2, status=503, match="/search")
    items = stac.search(DAKAR, flaky_stac_api.url, retry=FAST)
    assert sorted(i.id for i in items) == _expected(senegal_data, "dakar")
    searches = [r for r in flaky_stac_api.faults.requests if r.path.endswith("/search")]
    assert [r.status for r in searches[:3]] == [503, 503, 200]


def test_api_429_and_timeout_are_retried(flaky_stac_api, senegal_data):
    flaky_stac_api.faults.fail_next(1, status=429, match="/search")
    flaky_stac_api.faults.slow(3.0, n=1, match="/search")  # longer than the read timeout
    policy = stac.RetryPolicy(retries=3, connect_retries=0, backoff=0.05, timeout=(2.0, 1.0))
    t0 = time.perf_counter()
    items = stac.search(DAKAR, flaky_stac_api.url, retry=policy)
    assert sorted(i.id for i in items) == _expected(senegal_data, "dakar")
    assert time.perf_counter() - t0 < 10


def test_api_keeps_failing_names_endpoint_and_attempts(flaky_stac_api):
    flaky_stac_api.faults.fail_next(100, status=500, match="/search")
    with pytest.raises(UserError) as info:
        stac.search(DAKAR, flaky_stac_api.url, retry=FAST)
    msg = str(info.value)
    assert flaky_stac_api.url in msg and "4 attempts" in msg and "500" in msg
    assert "\n" not in msg
    searches = [r for r in flaky_stac_api.faults.requests if r.path.endswith("/search")]
    assert len(searches) == 4


def test_api_down_says_how_to_work_offline(down_url):
    t0 = time.perf_counter()
    with pytest.raises(UserError) as info:
        stac.search(DAKAR, down_url, retry=FAST)
    msg = str(info.value)
    assert msg.startswith(f"cannot reach the STAC API {down_url}")
    assert "--catalog" in msg and "\n" not in msg
    assert time.perf_counter() - t0 < 5


def test_dns_failure_says_how_to_work_offline():
    with pytest.raises(UserError, match="cannot reach the STAC API http://senland-no-such"):
        stac.search(DAKAR, "http://senland-no-such-host.invalid/v1", retry=FAST)


def test_empty_search_names_filters(stac_api, senegal_data):
    with pytest.raises(UserError) as info:
        stac.search(SINE_SALOUM, stac_api.url, max_cloud=20, retry=FAST)
    msg = str(info.value)
    assert "no scenes" in msg and "eo:cloud_cover < 20" in msg and "raise --max-cloud" in msg
    # Without the ceiling, the cloudy scenes are there.
    assert len(stac.search(SINE_SALOUM, stac_api.url, retry=FAST)) == 2


# -- Planetary Computer signing ----------------------------------------------------------------
def test_planetary_computer_items_are_signed(monkeypatch):
    import datetime as dt

    import planetary_computer.sas as sas

    feats = _recorded_features("TestItemSearch.test_datetime_results.yaml", "sentinel-2-l2a")
    items = [pystac.Item.from_dict(f) for f in feats[:2]]
    href = items[0].assets["B04"].href
    account = href.split("//")[1].split(".")[0]
    container = href.split("/")[3]
    url = f"{sas.Settings.get().sas_url}/{account}/{container}"
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    token = sas.SASToken(href=href, token="st=x&se=y&sp=rl&sig=fake", **{"msft:expiry": expiry})
    monkeypatch.setitem(sas.TOKEN_CACHE, url, token)
    signed = stac.sign_planetary_computer([stac.normalize_item(i) for i in items])
    assert signed[0].assets["B04"].href == f"{href}?st=x&se=y&sp=rl&sig=fake"
    assert items[0].assets["B04"].href == href  # the input is not modified


# -- recorded real responses: normalise + stack metadata (no pixels) ---------------------------
def _region_for(items: list[pystac.Item], epsg: int, name: str) -> Region:
    bbox = items[0].bbox
    w, s, e, n = bbox
    cx, cy = (w + e) / 2, (s + n) / 2
    return Region(name=name, bbox=(cx - 0.05, cy - 0.05, cx + 0.05, cy + 0.05), epsg=epsg,
                  time_range=("2015-01-01", "2030-12-31"))  # fmt: skip


@pytest.mark.parametrize(
    "cassette,provider",
    [
        ("test_multiple_collections.yaml", "earth-search"),
        ("TestCLISearch.test_filter[inprocess].yaml", "earth-search"),
        ("TestItemSearch.test_datetime_results.yaml", "planetary-computer"),
    ],
)
def test_recorded_searches_stack_lazily(cassette, provider):
    feats = _recorded_features(cassette, "sentinel-2-l2a")
    assert feats
    items = [stac.normalize_item(pystac.Item.from_dict(f)) for f in feats]
    for item in items:
        assert {"B02", "B03", "B04", "B08", "B8A", "B11", "B12", "SCL"} <= set(item.assets)
        assert isinstance(item.properties["proj:epsg"], int)
    epsg = items[0].properties["proj:epsg"]
    same = [i for i in items if i.properties["proj:epsg"] == epsg][:1]
    region = _region_for(same, epsg, "recorded")
    c = cube.stack(same, region, ["B02", "B8A", "SCL"])
    b = region.output_bounds()
    assert c.shape == (1, 3, round((b[3] - b[1]) / 10), round((b[2] - b[0]) / 10))
    assert c.rio.crs.to_epsg() == epsg and c.chunks is not None
    assert list(c["band"].values) == ["B02", "B8A", "SCL"]


def test_recorded_odc_item_28qch_stacks_on_utm28n():
    item = pystac.Item.from_file(str(ODC_ITEMS / "S2A_28QCH_20200714_0_L2A.json"))
    norm = stac.normalize_item(item)
    assert norm.properties["proj:epsg"] == 32628
    assert {"B01", "B02", "B8A", "B12", "SCL"} <= set(norm.assets)
    region = Region(name="mauritania-coast", bbox=(-16.85, 20.4, -16.8, 20.45), epsg=32628,
                    time_range=("2020-07-01", "2020-07-31"))  # fmt: skip
    c = cube.stack([norm], region, list(region.bands) + ["SCL"])
    b = region.output_bounds()
    assert c.shape == (1, 11, round((b[3] - b[1]) / 10), round((b[2] - b[0]) / 10))
    assert tuple(c.rio.transform())[:6] == (10.0, 0.0, b[0], 0.0, -10.0, b[3])
    assert str(c["time"].values[0]).startswith("2020-07-14")
    # The item lies in the search result's grid: its own footprint covers the bbox centre.
    assert np.isfinite(c["x"].values).all()
