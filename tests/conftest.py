"""Shared pytest fixtures: Senegal Sentinel-2 fixtures and real loopback servers.

Everything is session-scoped and started only when a test asks for it:

- ``senegal_data``: synthetic Sentinel-2 L2A COGs + STAC items + WorldCover-like labels,
  written by ``tests/data/senegal/make_data.py`` into a session temp dir.
- ``range_server``: HTTP server with Range support serving ``/senegal/...`` (the fixture
  data) and ``/saotome/...`` (the real WorldCover tile, bucket layout); faults reset around
  each test. ``range_server_session`` is the same server without the reset.
- ``senegal_items``: the fixture items with hrefs on the range server.
- ``stac_api``: stac-fastapi-pgstac on PostgreSQL/PostGIS, loaded with ``senegal_items``.
  Skipped with a message when PostgreSQL is not installed, except under CI (``CI`` set),
  where it fails instead.
- ``flaky_stac_api``: a fault-injecting reverse proxy in front of ``stac_api``.
- ``down_url``: a loopback URL where nothing listens.
- ``saotome_tile_root``: local directory with the real São Tomé WorldCover tile in the
  public bucket's layout.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

TESTS = Path(__file__).parent
if str(TESTS) not in sys.path:  # make ``import loopback`` work whatever the import mode
    sys.path.insert(0, str(TESTS))

SHARED_DATA = Path(os.environ.get("SENLAND_SHARED_DATA", TESTS.parents[1] / "shared" / "data"))
SAOTOME_TILE = SHARED_DATA / "worldcover-saotome" / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"


def _load_make_data() -> ModuleType:
    path = TESTS / "data" / "senegal" / "make_data.py"
    spec = importlib.util.spec_from_file_location("senegal_make_data", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class SenegalData:
    """The generated Senegal fixtures.

    Attributes:
        root: Directory written by ``make_data.py``.
        manifest: ``manifest.json``: per set its grid, MGRS tile, items and cloud cover.
        seconds: Time it took to generate them.
    """

    root: Path
    manifest: dict
    seconds: float
    _module: ModuleType = field(repr=False)

    def items(self, base_url: str | None = None, sets: list[str] | None = None) -> list[dict]:
        """Item dicts with hrefs under ``base_url`` (default: local paths under root)."""
        return self._module.load_items(self.root, base_url or str(self.root), sets)

    def collection(self) -> dict:
        """The ``sentinel-2-l2a`` collection dict."""
        return self._module.load_collection(self.root)

    def set_info(self, name: str) -> dict:
        """Manifest entry of one fixture set (``casamance``, ``dakar``, ``sine-saloum``)."""
        return self.manifest["sets"][name]


@pytest.fixture(scope="session")
def senegal_data(tmp_path_factory: pytest.TempPathFactory) -> SenegalData:
    """Generate the Senegal Sentinel-2 fixtures once per session."""
    module = _load_make_data()
    root = tmp_path_factory.mktemp("senegal")
    t0 = time.perf_counter()
    manifest = module.make_data(root)
    return SenegalData(root, manifest, time.perf_counter() - t0, module)


@pytest.fixture(scope="session")
def saotome_tile_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the real WorldCover N00E006 tile in the bucket layout (symlinked)."""
    if not SAOTOME_TILE.exists():
        pytest.skip(f"real WorldCover tile not found at {SAOTOME_TILE}")
    root = tmp_path_factory.mktemp("worldcover-saotome")
    dst = root / "v200" / "2021" / "map" / SAOTOME_TILE.name
    dst.parent.mkdir(parents=True)
    dst.symlink_to(SAOTOME_TILE)
    return root


@pytest.fixture(scope="session")
def range_server_session(senegal_data: SenegalData, saotome_tile_root: Path):
    """The Range file server for the whole session (faults are *not* reset)."""
    from loopback import RangeServer

    server = RangeServer({"senegal": senegal_data.root, "saotome": saotome_tile_root})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def range_server(range_server_session):
    """The Range file server with faults disarmed, the request log and GDAL's cache cleared."""
    clear_gdal_http_cache()
    range_server_session.faults.reset()
    yield range_server_session
    range_server_session.faults.reset()
    clear_gdal_http_cache()


def clear_gdal_http_cache() -> None:
    """Forget what GDAL's /vsicurl/ cached, so each test's reads really reach the server.

    rasterio does not expose ``VSICurlClearCache``; call it in the libgdal rasterio loaded.
    """
    import ctypes
    import glob

    import rasterio

    libs = Path(rasterio.__file__).parent.parent / "rasterio.libs"
    found = glob.glob(str(libs / "libgdal*.so*"))
    if found:
        ctypes.CDLL(found[0]).VSICurlClearCache()


@pytest.fixture(scope="session")
def senegal_items(senegal_data: SenegalData, range_server_session) -> list[dict]:
    """Fixture items whose asset hrefs point at the range server."""
    return senegal_data.items(range_server_session.url_for("senegal"))


@dataclass
class StacApi:
    """A running STAC API.

    Attributes:
        url: API root, e.g. ``http://127.0.0.1:41234``.
        collections: The loaded collection dicts.
        items: The loaded item dicts (hrefs on the range server).
        timings: Seconds per start-up step.
    """

    url: str
    collections: list[dict]
    items: list[dict]
    timings: dict[str, float]


@pytest.fixture(scope="session")
def stac_api(request: pytest.FixtureRequest):
    """stac-fastapi-pgstac with the Senegal fixtures, on loopback, for the session."""
    from loopback import PgstacServer, PostgresNotFound, find_pg_bin

    try:
        find_pg_bin()
    except PostgresNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the STAC API tests: {exc}")
        pytest.skip(str(exc))
    server = PgstacServer()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:  # PostgreSQL + migrations while the data is made
        db = pool.submit(server.start_database)
        data: SenegalData = request.getfixturevalue("senegal_data")
        items: list[dict] = request.getfixturevalue("senegal_items")
        db.result()
    server.load([data.collection()], items)
    server.start_api()
    server.timings["total"] = time.perf_counter() - t0
    yield StacApi(server.url, server.collections, server.items, server.timings)
    server.stop()


@dataclass
class FlakyApi:
    """A fault-injecting reverse proxy in front of another server.

    Attributes:
        url: The proxy's root URL (use it instead of the upstream URL).
        upstream: The real server's URL.
        faults: ``faults.fail_next(n)``, ``faults.truncate_next(...)``, ``faults.slow(...)``.
    """

    url: str
    upstream: str
    faults: object


@pytest.fixture(scope="session")
def _flaky_stac_api_session(stac_api: StacApi):
    from loopback import FaultInjector, ReverseProxy, ThreadedServer

    faults = FaultInjector(ReverseProxy(stac_api.url))
    server = ThreadedServer(faults, name="flaky-stac-proxy").start()
    yield FlakyApi(server.url, stac_api.url, faults)
    server.stop()


@pytest.fixture
def flaky_stac_api(_flaky_stac_api_session: FlakyApi) -> FlakyApi:
    """The STAC API behind a proxy whose faults you arm per test (reset around each test)."""
    _flaky_stac_api_session.faults.reset()  # type: ignore[attr-defined]
    yield _flaky_stac_api_session
    _flaky_stac_api_session.faults.reset()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def down_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (connections are refused)."""
    from loopback import DownEndpoint

    endpoint = DownEndpoint()
    yield endpoint.url
    endpoint.close()


# --- the embedded Brandenburg sample -------------------------------------------------


@pytest.fixture(scope="session")
def brandenburg_cube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded Brandenburg sample built into a Zarr cube once per session."""
    from senland_geo.build import build_region_cube
    from senland_geo.regions import get_region

    out = tmp_path_factory.mktemp("cubes") / "brandenburg.zarr"
    return build_region_cube(get_region("brandenburg"), out)


@pytest.fixture(scope="session")
def tiny_checkpoint(brandenburg_cube: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained slim U-Net checkpoint on the sample (fast, not accurate)."""
    from senland_geo.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        model="unet-resnet34-slim", epochs=1, patches_per_epoch=32, batch_size=8, eval_tile=256
    )
    train(brandenburg_cube, out, config, progress=False)
    return out / "checkpoint.pt"


@pytest.fixture
def toy_scene():
    """A tiny in-memory scene: three classes separable by band 0, in 4-column stripes."""
    import numpy as np

    from senland_geo.classes import IGNORE_INDEX
    from senland_geo.evaluate import SceneData, column_split

    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(60) // 4 % 3, (40, 1)).astype(np.int64)
    image = rng.normal(0, 0.1, (2, 40, 60)).astype(np.float32)
    image[0] += labels * 1.0
    labels[:2] = IGNORE_INDEX
    return SceneData(image, labels, column_split(60, buffer_px=2), ["B1", "B2"])
