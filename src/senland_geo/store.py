"""Zarr (v3) storage of cubes with their georeferencing.

A store is written under a temporary name and renamed at the end, so an interrupted
write never looks like a complete cube. The result opens with plain
``xarray.open_zarr`` (CRS in the ``spatial_ref`` coordinate, band names and dates as
coordinates, provenance in attributes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from senland_geo.errors import UserError

COMPLETE_ATTR = "senland_geo_complete"

#: Compression of the tiled variables (reflectance, labels), by name. ``lz4`` (the
#: default) is Blosc LZ4 at level 5 with byte shuffle: about as small as zarr's default
#: Zstandard on Sentinel-2 reflectance and 5-8x faster to write, so the write no longer
#: bounds the build. All are zarr built-ins (numcodecs' Blosc), so plain
#: ``xarray.open_zarr`` reads every store.
COMPRESSIONS = ("lz4", "zstd", "none")


def _compressors(name: str) -> tuple | None:
    """The zarr v3 ``compressors`` for a :data:`COMPRESSIONS` name (None: uncompressed)."""
    if name == "lz4":
        return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
    if name == "zstd":
        return (ZstdCodec(level=0),)
    if name == "none":
        return None
    raise UserError(f"compression {name!r} unknown; choose one of {', '.join(COMPRESSIONS)}")


def cube_to_dataset(
    cube: xr.DataArray,
    labels: xr.DataArray | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Bundle a cube (and optional label raster on its grid) into one Dataset."""
    crs = cube.rio.crs
    cube = cube.assign_coords(band=np.asarray([str(b) for b in cube["band"].values], dtype=object))
    ds = cube.to_dataset(name="reflectance")
    if labels is not None:
        ds["labels"] = labels.astype("uint8").reset_coords(drop=True)
    ds = ds.rio.write_crs(crs)
    ds = ds.rio.write_transform(cube.rio.transform())
    ds.attrs.update(
        {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in (attrs or {}).items()}
    )
    return ds


#: Sidecar inside a ``*.partial`` store listing the chunk blocks already written.
PROGRESS_FILE = "senland_progress.jsonl"


@dataclass
class WriteReport:
    """What :func:`write_cube` did.

    Attributes:
        path: The committed store.
        blocks: Spatial chunk blocks in the store.
        written: Blocks written by this call.
        resumed: Blocks found finished by an earlier, interrupted call.
        seconds: Wall time of the call.
    """

    path: Path
    blocks: int
    written: int
    resumed: int
    seconds: float


def _fingerprint(ds: xr.Dataset, chunks: tuple[int, int], compression: str = "lz4") -> str:
    """A digest of everything that decides the store's bytes (not the pixels themselves)."""
    payload = {
        "sizes": dict(ds.sizes),
        "vars": {k: [list(v.dims), str(v.dtype)] for k, v in ds.data_vars.items()},
        "coords": {
            k: np.asarray(v.values).astype(str).tolist()
            for k, v in ds.coords.items()
            if k in ("time", "band")
        },
        "xy": [float(ds["x"].values[0]), float(ds["y"].values[0])],
        "attrs": {k: str(v) for k, v in sorted(ds.attrs.items()) if k != COMPLETE_ATTR},
        "chunks": list(chunks),
        "compression": compression,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_progress(tmp: Path, fingerprint: str) -> set[tuple[int, int]] | None:
    """Blocks recorded as written in ``tmp``; None if ``tmp`` is not a resumable match."""
    sidecar = tmp / PROGRESS_FILE
    if not sidecar.is_file():
        return None
    lines = sidecar.read_text().splitlines()
    try:
        header = json.loads(lines[0])
    except (IndexError, ValueError):
        return None
    if header.get("fingerprint") != fingerprint:
        return None
    done: set[tuple[int, int]] = set()
    for line in lines[1:]:
        try:
            done.update(tuple(b) for b in json.loads(line)["done"])
        except (ValueError, KeyError, TypeError):
            break  # a line cut by a kill: ignore it and what follows
    return done


def _append_progress(tmp: Path, record: dict) -> None:
    with (tmp / PROGRESS_FILE).open("a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _translate_read_error(exc: Exception) -> UserError | None:
    """A one-line UserError for imagery that could not be read, else None."""
    text = " ".join(str(exc).split())
    markers = ("Error opening", "Error reading", "RasterioIOError", "not recognized as", "TIFF")
    if not any(m in text for m in markers) and type(exc).__name__ != "RasterioIOError":
        return None
    if len(text) > 400:
        text = text[:400] + "..."
    return UserError(
        f"cannot read an imagery asset ({type(exc).__name__}: {text}); the file is corrupt or "
        "the connection was cut: rerun the same command to resume, or drop the scene "
        "(--max-cloud, --start/--end)"
    )


@contextlib.contextmanager
def imagery_errors_as_user_errors() -> Iterator[None]:
    """Re-raise an error reading imagery inside the block as a one-line UserError."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        translated = _translate_read_error(exc)
        if translated is None:
            raise
        raise translated from exc


def write_cube(
    ds: xr.Dataset,
    path: str | Path,
    *,
    chunks: tuple[int, int] = (256, 256),
    overwrite: bool = False,
    progress: bool = False,
    batch_size: int | None = None,
    report: list[WriteReport] | None = None,
    compression: str = "lz4",
    prefetch: BlockPrefetch | None = None,
) -> Path:
    """Write a cube dataset to a Zarr v3 store: resumable, committed last.

    The store is built under ``<path>.partial``: first its structure (metadata and
    coordinates, ``compute=False``), then the data block by block (one block is one spatial
    chunk of every variable), each finished batch recorded in a sidecar. A rerun after an
    interruption finds the sidecar, checks that it describes the same dataset, and writes
    only the missing blocks. At the end the store is marked complete and renamed into place,
    so a half-written store is never mistaken for a cube.

    Args:
        ds: From :func:`cube_to_dataset` (dask-backed or in memory).
        path: Destination folder (``*.zarr``).
        chunks: Spatial chunk size; time and band are kept whole in every chunk so a
            patch is one read.
        overwrite: Replace an existing complete store.
        progress: Show a progress bar counting chunks.
        batch_size: Blocks computed together (default: 2 per dask worker thread, min 4).
        report: If given, a :class:`WriteReport` is appended to it.
        compression: One of :data:`COMPRESSIONS` for the tiled variables.
        prefetch: Blocks of a tiled variable already being computed
            (:func:`prefetch_blocks`); the pooled write takes them instead of computing
            them again. Blocks it does not take are dropped.

    Returns:
        The store path.

    Raises:
        UserError: The destination exists (and ``overwrite`` is False), its folder is
            missing, or imagery could not be read.
    """
    t0 = time.perf_counter()
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(
            f"output folder {path.parent} does not exist; create it or pick another --out"
        )
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; delete it or pass --overwrite")
    compressors = _compressors(compression)
    tmp = path.with_name(path.name + ".partial")
    ry, rx = chunks
    encoding: dict[str, dict] = {}
    for name, var in ds.data_vars.items():
        if var.dims[-2:] == ("y", "x"):
            encoding[name] = {
                "chunks": tuple(ds.sizes[d] for d in var.dims[:-2]) + (ry, rx),
                "compressors": compressors,
            }
    ds = _chunk_tiled(ds, encoding)
    for var in ds.variables.values():
        var.encoding = {}
    fingerprint = _fingerprint(ds, chunks, compression)
    done = _read_progress(tmp, fingerprint) if tmp.exists() else None
    resumed = len(done or ())
    if done is None:
        if tmp.exists():
            shutil.rmtree(tmp)
        _create_structure(ds, tmp, encoding)
        _append_progress(tmp, {"fingerprint": fingerprint, "chunks": list(chunks)})
        done = set()
    root = zarr.open_group(tmp, mode="r+", zarr_format=3)
    tiled = [n for n in encoding if n in ds.data_vars]
    writers = {name: _ChunkWriter(root[name], tmp / name, compression) for name in tiled}
    ny, nx = -(-ds.sizes["y"] // ry), -(-ds.sizes["x"] // rx)
    blocks = [(iy, ix) for iy in range(ny) for ix in range(nx)]
    todo = [b for b in blocks if b not in done]

    def block_tasks(block: tuple[int, int], names: list[str] = tiled) -> list:
        iy, ix = block
        sy, sx = slice(iy * ry, (iy + 1) * ry), slice(ix * rx, (ix + 1) * rx)
        tasks = []
        for name in names:
            data = ds[name].data
            lead = (slice(None),) * (data.ndim - 2)
            key = (0,) * len(lead) + (iy, ix)
            tasks.append(writers[name].task(data[lead + (sy, sx)], key))
        return tasks

    def write_direct(block: tuple[int, int]) -> list[str]:
        """Compute the variables of ``block`` and write them by direct calls.

        A plain aligned read is one call (no dask graph), a prefetched block is taken as
        computed, any other block is computed on dask's synchronous scheduler.

        Returns:
            The variables left to write (through dask: their codec is not a direct one).
        """
        rest = []
        for name in tiled:
            if not writers[name].direct:
                rest.append(name)
                continue
            data = ds[name].data
            key = (0,) * (data.ndim - 2) + block
            read = (prefetch.take(data, key) if prefetch else None) or _block_source(data, key)
            with imagery_errors_as_user_errors():
                writers[name].write(read(), key)
        return rest

    def record(done_blocks: list[tuple[int, int]]) -> None:
        _append_progress(tmp, {"done": [list(b) for b in done_blocks]})
        bar.update(len(done_blocks))

    scheduler = in_process_scheduler()
    threads = _threaded_workers(scheduler)
    with _progress_bar(progress, len(blocks), len(blocks) - len(todo), path.name) as bar:
        if batch_size is None and threads and len(todo) >= 2 * threads:
            _write_pooled(todo, block_tasks, write_direct, threads, record)
        else:
            batch_size = batch_size or max(4, 2 * _worker_threads())
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                _compute_tasks([t for b in batch for t in block_tasks(b)], scheduler)
                record(batch)
    if prefetch is not None:
        prefetch.cancel()  # blocks not taken (finished by an earlier call, or batch writes)
    # Commit: mark complete, drop the sidecar, then move into place.
    root.attrs[COMPLETE_ATTR] = True
    (tmp / PROGRESS_FILE).unlink()
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    if report is not None:
        report.append(WriteReport(path, len(blocks), len(todo), resumed, time.perf_counter() - t0))
    return path


def _chunk_tiled(ds: xr.Dataset, encoding: dict[str, dict]) -> xr.Dataset:
    """``ds`` with each tiled variable a dask array chunked like its store array.

    What ``ds.chunk(...)`` does to those variables (a no-op for arrays already chunked so),
    without its chunk-manager lookup: xarray's first ``chunk`` scans every installed
    package's entry points (about 25 ms of CPU in a fresh process with 250 packages).
    Variables that are not tiled are left as they are (the store writes them computed).
    """
    import dask.array as da

    tiled = {}
    for name, enc in encoding.items():
        var = ds[name].variable
        data = var.data
        if isinstance(data, da.Array):
            data = data.rechunk(enc["chunks"])
        else:
            data = da.from_array(np.asarray(data), chunks=enc["chunks"])
        tiled[name] = var.copy(deep=False, data=data)
    return ds.assign(tiled)


class _NoBar:
    """The part of a tqdm bar :func:`write_cube` uses, doing nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        """Ignore ``n`` finished chunks."""


def _progress_bar(show: bool, total: int, initial: int, name: str) -> Any:
    """A tqdm bar counting written chunks, or a silent stand-in (tqdm not imported)."""
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="chunk", desc=f"writing {name}", leave=False)


def _block_source(data: Any, key: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """A function computing block ``key`` of the dask array ``data`` in the calling thread.

    A plain aligned read (:func:`_block_reader`) is called directly; any other block is
    computed on dask's synchronous scheduler (the caller is already a pool thread).
    """
    read = _block_reader(data, key)
    if read is not None:
        return read
    import dask.local

    block = data.blocks[key]
    return lambda: np.asarray(block.compute(scheduler=dask.local.get_sync))


class BlockPrefetch:
    """The first blocks of a tiled dask array, computed ahead on the shared I/O pool.

    Started by :func:`prefetch_blocks` as soon as the array is known, so its reads run
    while the caller still prepares the store (cloud check, labels, metadata); at most
    one block per pool thread, what the pooled write holds in memory anyway.
    """

    def __init__(self, data: Any, threads: int) -> None:
        self.name = data.name
        pool = shared_pool(threads)
        keys = list(np.ndindex(*data.numblocks))[:threads]  # the write order (row-major)
        self._futures = {key: pool.submit(_block_source(data, key)) for key in keys}

    def take(self, data: Any, key: tuple[int, ...]) -> Callable[[], np.ndarray] | None:
        """The prefetched block ``key`` of ``data`` (waits for it), or None if not prefetched."""
        if getattr(data, "name", None) != self.name:
            return None
        future = self._futures.pop(key, None)
        return None if future is None else future.result

    def cancel(self) -> None:
        """Drop the blocks not taken (those not started are not computed)."""
        futures, self._futures = self._futures, {}
        for future in futures.values():
            future.cancel()


def prefetch_blocks(data: Any, path: str | Path, chunks: tuple[int, int]) -> BlockPrefetch | None:
    """Start computing the first blocks :func:`write_cube` will write to ``path``, if useful.

    Only when the write will run on the pool (dask's threaded scheduler, at least two
    blocks per thread), ``data`` is a dask array already chunked like the store (whole
    leading dimensions, ``chunks`` in y and x) and no interrupted write of ``path``
    exists (a resume may not need those blocks). The caller passes the result to
    :func:`write_cube` and cancels it if it does not get there.

    Returns:
        The started prefetch, or None.
    """
    import dask.array as da

    threads = _threaded_workers(in_process_scheduler())
    if not threads or not isinstance(data, da.Array) or data.ndim < 2:
        return None
    target = tuple(data.shape[:-2]) + tuple(chunks)
    if data.rechunk(target) is not data:  # write_cube would write another array
        return None
    if data.numblocks[-2] * data.numblocks[-1] < 2 * threads:
        return None
    path = Path(path)
    if path.with_name(path.name + ".partial").exists():
        return None
    return BlockPrefetch(data, threads)


def _block_reader(data: Any, key: tuple[int, ...]) -> Callable[[], np.ndarray] | None:
    """:func:`senland_geo.aligned_read.block_reader` for dask arrays, else None."""
    import dask.array as da

    from senland_geo import aligned_read

    return aligned_read.block_reader(data, key) if isinstance(data, da.Array) else None


def _compute_tasks(tasks: list, scheduler: Any) -> None:
    """Compute write tasks; unreadable imagery becomes a one-line UserError."""
    import dask

    with imagery_errors_as_user_errors():
        dask.compute(*tasks, scheduler=scheduler)


def _threaded_workers(scheduler: Any) -> int:
    """Threads of dask's threaded scheduler when it is ``scheduler``, else 0."""
    import dask
    import dask.threaded

    if scheduler is not dask.threaded.get:
        return 0
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


_pools: dict[int, Any] = {}
_pools_lock = threading.Lock()


def shared_pool(threads: int) -> Any:
    """A process-wide pool of ``threads`` threads for reads and writes, made once per size.

    Reused by every store write and by the build's cloud check, so GDAL's and PROJ's
    per-thread setup (about 8 ms of CPU per new thread that opens a raster) is paid once
    per thread, not per call.
    """
    from concurrent.futures import ThreadPoolExecutor

    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="senland-io")
        return pool


def _write_pooled(
    todo: list[tuple[int, int]],
    block_tasks: Callable[..., list],
    write_direct: Callable[[tuple[int, int]], list[str]],
    threads: int,
    record: Callable[[list[tuple[int, int]]], None],
) -> None:
    """Write blocks on ``threads`` threads, each block read, encoded and written by one.

    What ``dask.compute`` of a batch of blocks does on the threaded scheduler, without the
    wait for a batch's last block before the next batch starts: a thread takes the next
    block as soon as it is done with one, and the finished blocks are recorded as they come
    (in one sidecar line per wake-up). Each block's graph is built and computed
    synchronously in its thread, so at most ``threads`` blocks are in memory; a variable
    whose block is one plain aligned read (:func:`senland_geo.aligned_read.block_reader`)
    is read and written by direct calls, without a dask graph (3-7 ms of CPU per block).
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    import dask.local

    def run(block: tuple[int, int]) -> None:
        rest = write_direct(block)
        if rest:
            _compute_tasks(block_tasks(block, rest), dask.local.get_sync)

    pool = shared_pool(threads)
    pending = {pool.submit(run, block): block for block in todo}
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            ok, error = [], None
            for future in finished:
                block = pending.pop(future)
                if future.exception() is None:
                    ok.append(block)
                elif error is None:
                    error = future.exception()
            if ok:
                record(ok)
            if error is not None:
                raise error
    finally:
        for future in pending:
            future.cancel()
        wait(pending)  # blocks already running finish before the caller goes on


def _create_structure(ds: xr.Dataset, tmp: Path, encoding: dict[str, dict]) -> None:
    """Write the store's metadata and small variables; the tiled arrays stay empty.

    What ``ds.to_zarr(tmp, encoding=encoding, compute=False)`` writes (the same metadata
    documents, tested), without handing xarray the tiled dask arrays: building the
    delayed write of a dask array makes dask import ``distributed`` (0.2-0.5 s) even when
    no cluster is used. The small variables (coordinates, ``spatial_ref``) are written by
    xarray; the tiled arrays are created with zarr, with xarray's attributes, dimension
    names and fill value.
    """
    tiled = list(encoding)
    rest = ds.drop_vars(tiled)
    rest = rest.compute(scheduler=in_process_scheduler())  # coordinates: a few KB
    rest.attrs[COMPLETE_ATTR] = False
    rest.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    root = zarr.open_group(tmp, mode="r+", zarr_format=3)
    if "coordinates" not in ds.attrs:  # xarray's note for coordinates of no variable
        root.attrs.pop("coordinates", None)
    for name in tiled:
        var = ds[name]
        attrs = {k: _json_attr(v) for k, v in var.attrs.items()}
        coords = [c for c in ds.coords if c not in ds.dims and set(ds[c].dims) <= set(var.dims)]
        if coords:
            attrs["coordinates"] = " ".join(coords)
        root.create_array(
            name,
            shape=var.shape,
            chunks=encoding[name]["chunks"],
            dtype=var.dtype,
            compressors=encoding[name]["compressors"],
            fill_value=0,
            dimension_names=var.dims,
            attributes=attrs,
        )


def _json_attr(value: Any) -> Any:
    """An attribute value as JSON (numpy arrays and scalars as lists and numbers)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_json_attr(v) for v in value]
    return value


class _ChunkWriter:
    """Writes whole chunks of one Zarr v3 array: encode, then one file per chunk.

    The data path of :func:`write_cube`. Every block is exactly one chunk of the array, so
    the chunk's bytes are its (padded) pixels, little-endian, through the array's one
    compressor, stored under the array's chunk key: what zarr writes, without zarr's
    per-chunk merge, fill-value scan and buffer copies (they cost more than the
    compression). Arrays with other codecs go through ``zarr`` (``dask.array.store``).
    """

    def __init__(self, array: Any, folder: Path, compression: str) -> None:
        self.array, self.folder = array, folder
        self.shape = tuple(array.metadata.chunk_grid.chunk_shape)
        self.fill = array.metadata.fill_value
        self.codec = _numcodecs_codec(compression)
        names = [c.to_dict()["name"] for c in array.metadata.codecs]
        expected = ["bytes"] + ({"lz4": ["blosc"], "zstd": ["zstd"]}.get(compression) or [])
        self.direct = names == expected and array.metadata.chunk_key_encoding.name == "default"

    def write(self, block: np.ndarray, key: tuple[int, ...]) -> None:
        """Encode and write ``block`` (chunk ``key``) now (direct writers only)."""
        _write_chunk(block, self._file(key), self.shape, self.fill, self.codec)

    def _file(self, key: tuple[int, ...]) -> str:
        return str(self.folder / self.array.metadata.encode_chunk_key(key))

    def task(self, block: Any, key: tuple[int, ...]) -> Any:
        """A dask task writing ``block`` (an array of chunk ``key``, dask-backed or not)."""
        import dask.array as da

        if not self.direct:
            region = tuple(
                slice(k * n, k * n + m)
                for k, n, m in zip(key, self.shape, block.shape, strict=True)
            )
            source = block if isinstance(block, da.Array) else da.from_array(block)
            return da.store(source, self.array, regions=region, lock=False, compute=False)
        file = self._file(key)
        if not isinstance(block, da.Array):
            block = da.from_array(block, chunks=block.shape)
        elif block.npartitions != 1:
            block = block.rechunk(block.shape)
        # ``meta`` given: without it dask calls the function on an empty block to infer the
        # output type, which here would pad, encode and write a whole chunk of fill values.
        return block.map_blocks(
            _write_chunk,
            file=file,
            shape=self.shape,
            fill=self.fill,
            codec=self.codec,
            chunks=(1,) * block.ndim,
            dtype=bool,
            meta=np.empty((0,) * block.ndim, dtype=bool),
        )


def _numcodecs_codec(compression: str) -> Any:
    """The numcodecs codec writing the bytes zarr's codec for ``compression`` reads."""
    import numcodecs

    if compression == "lz4":
        return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    if compression == "zstd":
        return numcodecs.Zstd(level=0)
    return None


def _write_chunk(
    block: np.ndarray, file: str, shape: tuple[int, ...], fill: Any, codec: Any
) -> np.ndarray:
    """Encode one chunk (padded to the chunk ``shape`` with ``fill``) and write its file.

    Returns:
        A one-element array (what ``map_blocks`` needs; the file is the result).
    """
    block = np.asarray(block)
    if block.shape != shape:
        padded = np.full(shape, fill, dtype=block.dtype)
        padded[tuple(slice(0, n) for n in block.shape)] = block
        block = padded
    data = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<"))
    payload = codec.encode(data) if codec is not None else data.data
    os.makedirs(os.path.dirname(file), exist_ok=True)
    with open(file, "wb") as fh:
        fh.write(payload)
    return np.ones((1,) * block.ndim, dtype=bool)


def in_process_scheduler() -> Any:
    """The threaded or synchronous dask scheduler when it is the one in use, else None.

    Passing it to ``dask.compute`` explicitly keeps dask from importing ``distributed``
    (about 0.5 s) just to look for a client that cannot exist. None (dask decides) when
    a distributed client may be active or another scheduler is configured.
    """
    import dask
    import dask.local
    import dask.threaded

    name = dask.config.get("scheduler", None)
    if name in ("sync", "synchronous", "single-threaded"):
        return dask.local.get_sync
    if name in ("threads", "threading") or (name is None and "distributed" not in sys.modules):
        return dask.threaded.get
    return None


def _worker_threads() -> int:
    """Threads of the active dask.distributed client, else the local CPU count."""
    if "distributed" not in sys.modules:  # no client without it (importing it takes ~0.5 s)
        return os.cpu_count() or 1
    try:
        from distributed import get_client

        client = get_client()
        return max(1, sum(client.nthreads().values()))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube store lazily, with CRS and transform restored.

    Raises:
        UserError: The store is missing or was not completely written.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"cube {path} does not exist; build it with 'senland-geo cube'")
    ds = xr.open_zarr(path, consolidated=False, decode_coords="all")
    if not ds.attrs.get(COMPLETE_ATTR, False):
        raise UserError(f"cube {path} is incomplete (an interrupted write); rebuild it")
    return ds


def grid_of(ds: xr.Dataset | xr.DataArray) -> dict[str, Any]:
    """Return the grid of a cube: CRS, affine transform, (height, width), bounds."""
    transform = ds.rio.transform()
    return {
        "crs": ds.rio.crs,
        "transform": transform,
        "shape": (ds.sizes["y"], ds.sizes["x"]),
        "bounds": ds.rio.bounds(),
        "res": float(abs(transform.a)),
    }


def band_names(ds: xr.Dataset) -> list[str]:
    """Return the band names of a cube dataset."""
    return [str(b) for b in np.asarray(ds["band"].values)]
