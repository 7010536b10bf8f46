"""Direct window reads for assets already on the cube's grid (a fast path beside stackstac).

When every asset is in the output CRS and its pixels are whole multiples of the output
pixel, with its origin on an output pixel corner (Sentinel-2 10/20/60 m bands on a 10 m
grid of the same UTM zone), no warping is needed: each output chunk is a plain window read
of every asset, the coarser bands repeated ``k`` times per axis (what nearest resampling
does for a whole factor ``k``). :func:`aligned_array` builds one dask task per spatial chunk
that reads every date and band of it, so the array comes out chunked ``(time, band, y, x)``
like the store, with no rechunk and no per-band task overhead.

The values are those of ``stackstac.stack(..., resampling=nearest, fill_value=0,
rescale=False)``: pixels outside an asset, and the asset's nodata, are 0; an asset
stackstac would skip for a chunk (its bounds do not meet the chunk) is not read. An asset
whose file turns out not to be aligned (or not a plain one-band uint8/uint16 raster) is read
by stackstac's own reader, so the result never depends on the path.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio import windows
from rasterio.enums import MaskFlags, Resampling
from rasterio.windows import Window

#: Idle open datasets kept for reuse, over all assets (least recently used closed first).
CACHE_SIZE = 128

#: Decoded bytes an open dataset may serve before it is closed. GDAL keeps every block a
#: dataset decoded in its block cache until the dataset closes, and a chunk task touches
#: every asset, so datasets left open would hold the whole cube (RSS growing with it).
#: Closing each after 1 MiB bounds that per open dataset, at the cost of a reopen (about
#: 1 ms): a 10 m band's every two 512 px chunks, a 20 m band's every eight. Open datasets
#: are shared by the threads (one task at a time), so about one per asset is open. (With
#: per-thread datasets, 1 MiB made the 4x benchmark cube peak 30% above the base one; with
#: shared ones 4%. Bounding GDAL_CACHEMAX instead does not help: with a 16 MiB cache and
#: datasets never closed, the 4x cube's reads still peaked 40% higher, see
#: docs/performance.md.)
BYTES_PER_OPEN = 2**20

#: Name prefix of the dask arrays :func:`aligned_array` makes.
NAME_PREFIX = "aligned-read-"

#: Source data types read directly (their values fit uint16 unchanged).
DIRECT_DTYPES = ("uint8", "uint16")

_TOL = 1e-6  # tolerance, in output pixels, for "a whole number of pixels"
#: Open datasets not in use, by (plan session, url): a dataset serves one task at a time,
#: any thread (GDAL handles must not be used concurrently, but may change threads).
_idle: OrderedDict[tuple[str, str], list] = OrderedDict()
_idle_lock = threading.Lock()


@dataclass(frozen=True)
class Plan:
    """Everything a chunk task needs: the assets, the output grid and the GDAL settings.

    Attributes:
        urls: ``(time, band)`` object array of asset hrefs (None where there is none).
        windows: ``(time, band)`` object array of asset extents on the output grid
            (rasterio Windows from the STAC metadata: stackstac skips an asset for a chunk
            its window does not meet).
        spec: stackstac's output ``RasterSpec`` (CRS, bounds, resolution).
        env: stackstac ``LayeredEnv`` with the GDAL options for opening and reading.
        session: Identifies this plan's open datasets among the idle ones kept for reuse.
        checked: Per asset, what its file turned out to be on first open (its factors on
            the output grid, or None: read it through stackstac), so a reopen skips the
            checks.
    """

    urls: np.ndarray
    windows: np.ndarray
    spec: Any
    env: Any
    session: str
    checked: dict = field(default_factory=dict, compare=False, repr=False)


def _whole(value: float) -> int | None:
    """``value`` as an int if it is a whole number (within tolerance), else None."""
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < _TOL else None


def _factors(transform: Sequence[float], spec: Any) -> tuple[int, int, int, int] | None:
    """``(ky, kx, row_offset, col_offset)`` of an asset transform on the output grid.

    Returns None unless the asset is north-up, its pixel is a whole multiple of the
    output pixel and its origin is a corner of an output pixel.
    """
    if len(transform) < 6:
        return None
    a, b, c, d, e, f = (float(v) for v in transform[:6])
    out = spec.transform
    if b != 0 or d != 0 or a <= 0 or e >= 0 or out.b != 0 or out.d != 0:
        return None
    kx, ky = _whole(a / out.a), _whole(-e / -out.e)
    col, row = _whole((c - out.c) / out.a), _whole((out.f - f) / -out.e)
    if None in (kx, ky, col, row) or kx < 1 or ky < 1:  # type: ignore[operator]
        return None
    return ky, kx, row, col  # type: ignore[return-value]


def plan_prepared(
    table: np.ndarray,
    spec: Any,
    ids: Sequence[str],
    items: Sequence[dict],
    assets: Sequence[str],
    *,
    epsg: int,
    gdal_env: Any,
) -> Plan | None:
    """Plan direct reads from what ``stackstac.prepare.prepare_items`` returned.

    Returns None when some asset is not on the output grid.

    Args:
        table: Its asset table ``(time, band)``.
        spec: Its output ``RasterSpec``.
        ids: Its asset ids (the band order).
        items: Its items (sorted by date).
        assets: The requested asset keys.
        epsg: Output CRS.
        gdal_env: stackstac ``LayeredEnv`` to open and read under.

    Returns:
        A :class:`Plan` whose ``(time, band)`` layout matches ``stackstac.stack`` with the
        same arguments, or None (use stackstac).
    """
    if list(ids) != list(assets) or spec.epsg != epsg:
        return None
    urls = np.empty(table.shape, dtype=object)
    wins = np.empty(table.shape, dtype=object)
    for (i, j), entry in np.ndenumerate(table):
        url = entry["url"]
        if not url:
            continue
        item = items[i]
        asset = item["assets"][ids[j]]
        props = item.get("properties", {})
        asset_epsg = asset.get("proj:epsg", props.get("proj:epsg"))
        transform = asset.get("proj:transform", props.get("proj:transform"))
        if asset_epsg != epsg or transform is None or _factors(transform, spec) is None:
            return None
        box = entry["bounds"]
        if np.isnan(box).any():
            return None
        urls[i, j] = url
        wins[i, j] = windows.from_bounds(*box, spec.transform)  # as stackstac does
    return Plan(urls, wins, spec, gdal_env, uuid.uuid4().hex)


def aligned_array(plan: Plan, chunksize: int) -> Any:
    """A lazy uint16 dask array ``(time, band, y, x)``, one task per spatial chunk."""
    import dask
    from dask.array.core import Array, normalize_chunks
    from dask.highlevelgraph import HighLevelGraph

    height, width = plan.spec.shape
    n_time, n_band = plan.urls.shape
    chunks = normalize_chunks(
        ((n_time,), (n_band,), chunksize, chunksize), (n_time, n_band, height, width)
    )
    name = NAME_PREFIX + dask.base.tokenize(plan.session, chunks)
    graph: dict = {}
    y0 = 0
    for iy, h in enumerate(chunks[2]):
        x0 = 0
        for ix, w in enumerate(chunks[3]):
            graph[(name, 0, 0, iy, ix)] = (read_chunk, plan, (y0, y0 + h), (x0, x0 + w))
            x0 += w
        y0 += h
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=[])
    return Array(hlg, name, chunks, dtype=np.dtype("uint16"))


def block_reader(array: Any, index: tuple[int, ...]) -> Callable[[], np.ndarray] | None:
    """The read of block ``index`` of ``array`` as a plain call, if that is all it is.

    For an array straight from :func:`aligned_array` (no other graph layer: not sliced,
    rechunked or computed on), block ``index`` is one :func:`read_chunk` call, which the
    store's writer can make directly instead of computing a one-task dask graph per block.

    Returns:
        A function returning the block, or None (compute the block with dask).
    """
    graph = array.__dask_graph__()
    layers = getattr(graph, "layers", None)
    if not array.name.startswith(NAME_PREFIX) or layers is None or len(layers) != 1:
        return None
    task = layers[array.name].get((array.name, *index))
    if not (isinstance(task, tuple) and len(task) == 4 and task[0] is read_chunk):
        return None
    _func, plan, rows, cols = task
    return lambda: read_chunk(plan, rows, cols)


def read_chunk(plan: Plan, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Read one spatial chunk of every date and band: ``(time, band, h, w)`` uint16.

    Raises:
        RuntimeError: ``Error opening <url>`` / ``Error reading <window> from <url>`` (the
            messages stackstac gives, which :mod:`senland_geo.store` turns into a UserError).
    """
    r0, r1 = rows
    c0, c1 = cols
    out = np.zeros(plan.urls.shape + (r1 - r0, c1 - c0), dtype=np.uint16)
    chunk = Window.from_slices(rows, cols)
    assets = list(np.ndindex(*plan.urls.shape))
    # Start each chunk at another asset, so tasks running side by side rarely want the
    # same dataset at once (each would need its own open handle).
    start = (r0 // max(1, r1 - r0) * 7 + c0 // max(1, c1 - c0) * 3) % max(1, len(assets))
    with plan.env.open:  # one GDAL environment for the task (entering one costs ~0.3 ms)
        for t, b in assets[start:] + assets[:start]:
            url = plan.urls[t, b]
            if not url:
                continue
            # stackstac reads an asset only if its window meets the chunk
            if not windows.intersect(chunk, plan.windows[t, b]):
                continue
            source = _acquire(plan, url)
            try:
                source.served += source.read_into(out[t, b], rows, cols)
            except BaseException:
                source.close()
                raise
            _release(plan, url, source)
    return out


class _Direct:
    """An aligned one-band dataset, read by windows and repeated up to the output grid."""

    def __init__(self, url: str, ds: Any, factors: tuple[int, int, int, int]) -> None:
        self.url, self.ds = url, ds
        self.served = 0
        self.ky, self.kx, self.row, self.col = factors
        nodata = ds.nodata
        self.nodata = None if nodata is None or nodata == 0 or math.isnan(nodata) else nodata

    def read_into(self, out: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> int:
        """Fill ``out`` (the chunk ``rows`` x ``cols``) where the asset covers it.

        Returns:
            Bytes of source pixels decoded.
        """
        ky, kx = self.ky, self.kx
        # Asset extent on the output grid, clipped to the chunk.
        tr0, tr1 = max(rows[0], self.row), min(rows[1], self.row + self.ds.height * ky)
        tc0, tc1 = max(cols[0], self.col), min(cols[1], self.col + self.ds.width * kx)
        if tr0 >= tr1 or tc0 >= tc1:
            return 0
        # Source pixels covering it (whole pixels; the first may be cut by the chunk edge).
        sr0, sr1 = (tr0 - self.row) // ky, -(-(tr1 - self.row) // ky)
        sc0, sc1 = (tc0 - self.col) // kx, -(-(tc1 - self.col) // kx)
        window = Window(sc0, sr0, sc1 - sc0, sr1 - sr0)
        try:
            data = self.ds.read(1, window=window)
        except Exception as exc:
            raise RuntimeError(f"Error reading {window} from {self.url!r}: {exc!r}") from exc
        if self.nodata is not None:
            data[data == self.nodata] = 0
        target = out[tr0 - rows[0] : tr1 - rows[0], tc0 - cols[0] : tc1 - cols[0]]
        if ky == 1 and kx == 1:
            target[...] = data
            return data.nbytes
        up = np.empty((data.shape[0] * ky, data.shape[1] * kx), dtype=data.dtype)
        for i in range(ky):
            for j in range(kx):
                up[i::ky, j::kx] = data
        dy, dx = tr0 - self.row - sr0 * ky, tc0 - self.col - sc0 * kx
        target[...] = up[dy : dy + target.shape[0], dx : dx + target.shape[1]]
        return data.nbytes

    def close(self) -> None:
        self.ds.close()


class _Warped:
    """An asset the direct path cannot read as is: stackstac's own reader (same values)."""

    def __init__(self, url: str, plan: Plan) -> None:
        from stackstac.rio_reader import AutoParallelRioReader

        self.served = 0

        self.reader = AutoParallelRioReader(
            url=url,
            spec=plan.spec,
            resampling=Resampling.nearest,
            dtype=np.dtype("uint16"),
            fill_value=np.uint16(0),
            scale_offset=(1, 0),
            gdal_env=plan.env,
        )

    def read_into(self, out: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> int:
        out[...] = self.reader.read(Window.from_slices(rows, cols))
        return out.nbytes

    def close(self) -> None:
        self.reader.close()


def _open(url: str, plan: Plan) -> _Direct | _Warped:
    """Open ``url``; direct reads if the file really is on the grid, else stackstac's reader.

    The first open of an asset checks the file (CRS, transform, one band, data type, no
    mask beyond nodata) and records the outcome in ``plan.checked``; reopens trust it.
    """
    import rasterio

    if url in plan.checked and plan.checked[url] is None:
        return _Warped(url, plan)
    try:
        ds = rasterio.open(url, sharing=False)
    except Exception as exc:
        raise RuntimeError(f"Error opening {url!r}: {exc!r}") from exc
    if url not in plan.checked:
        factors = _factors(tuple(ds.transform)[:6], plan.spec)
        plain = (
            ds.count == 1
            and ds.dtypes[0] in DIRECT_DTYPES
            and ds.crs is not None
            and ds.crs.to_epsg() == plan.spec.epsg
            and all(f in (MaskFlags.all_valid, MaskFlags.nodata) for f in ds.mask_flag_enums[0])
        )
        plan.checked[url] = factors if plain else None
    factors = plan.checked[url]
    if factors is None:
        ds.close()
        return _Warped(url, plan)
    return _Direct(url, ds, factors)


def _acquire(plan: Plan, url: str) -> _Direct | _Warped:
    """An idle open dataset for ``url`` in ``plan``, else a newly opened one (now in use)."""
    key = (plan.session, url)
    with _idle_lock:
        free = _idle.get(key)
        if free:
            source = free.pop()
            if not free:
                del _idle[key]
            return source
    return _open(url, plan)


def _release(plan: Plan, url: str, source: _Direct | _Warped) -> None:
    """Return a dataset after use: idle for the next task, or closed.

    Closed once it has served :data:`BYTES_PER_OPEN`; the least recently used idle ones
    are closed when more than :data:`CACHE_SIZE` are idle.
    """
    if source.served >= BYTES_PER_OPEN:
        source.close()
        return
    key = (plan.session, url)
    evicted = []
    with _idle_lock:
        _idle.setdefault(key, []).append(source)
        _idle.move_to_end(key)
        total = sum(len(v) for v in _idle.values())
        while total > CACHE_SIZE:
            old_key, old = next(iter(_idle.items()))
            evicted.append(old.pop(0))
            if not old:
                del _idle[old_key]
            total -= 1
    for old_source in evicted:
        old_source.close()


def close_idle() -> None:
    """Close the open datasets kept for reuse."""
    with _idle_lock:
        sources = [s for free in _idle.values() for s in free]
        _idle.clear()
    for source in sources:
        source.close()
