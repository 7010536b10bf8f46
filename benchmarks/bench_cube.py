"""Cube-build benchmark: senland-geo stack -> Zarr against raw rasterio window reads.

Writes seeded, realistic Sentinel-2 L2A band-separate COGs (10 bands + SCL; 10 m bands
at 10 m, 20 m bands and SCL at 20 m; uint16/uint8, DEFLATE + predictor, 256 px tiles,
overviews; texture, clouds and shadows from ``tests/data/senegal/make_data.py``) on the
UTM 28N grid at two sizes, a base area and one four times larger (2x per side), with a
local STAC item collection per size. Then, each in a fresh subprocess:

* ``build``: :func:`senland_geo.build.build_region_cube` on the item collection
  (search -> stack -> SCL all-cloudy check -> composite -> resumable Zarr v3 write), on
  dask's threaded scheduler with ``--threads`` threads;
* ``raw``: plain rasterio window reads of the same COGs: every band of every date, in
  512 px windows of the 10 m grid (20 m bands read with ``out_shape`` and nearest
  resampling, so both paths decode the same pixels into the same uint16 bytes), on a
  thread pool of the same size;
* ``stack``: senland-geo's stackstac cube of the same 11 bands computed and dropped (the
  read path of the build without the SCL check, the rechunk and the Zarr write), to show
  where the build's time goes.

Throughput is MB/s (1 MB = 1e6 bytes) of decoded pixels, counted identically for both:
``dates x 11 bands x height x width x 2`` bytes of the 10 m uint16 grid. The reflectance
the build stored is checked against the raw reads (per date and band sums). Peak RSS is
each subprocess's own high-water mark (``VmHWM``; a child's ``ru_maxrss`` would include the
parent's peak, which Linux carries over fork + exec). The machine is shared: the load average
is recorded before and after every run; figures measured under load are lower bounds.

    python benchmarks/bench_cube.py [--quick] [--size 1024] [--dates 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAKE_DATA = REPO / "tests" / "data" / "senegal" / "make_data.py"
EPSG = 32628
CENTER = (-16.27, 12.57)  # lower Casamance, as the test fixtures
WINDOW = 512  # raw-read window and cube chunk side (10 m pixels)
SEED = 20212
CLOUD = (0.05, 0.30, 0.10, 0.55, 0.02, 0.20, 0.08, 0.40)
GREEN = (0.15, 0.10, 0.30, 0.95, 0.80, 0.50, 0.20, 0.60)


def _make_data_module() -> ModuleType:
    """Import ``tests/data/senegal/make_data.py`` (the seeded fixture generator)."""
    spec = importlib.util.spec_from_file_location("senegal_make_data", MAKE_DATA)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# Data generation
# --------------------------------------------------------------------------------------------
def generate(out: Path, name: str, size: int, dates: int, seed: int = SEED) -> dict[str, Any]:
    """Write ``dates`` scenes of band-separate COGs of ``size`` x ``size`` 10 m pixels.

    Args:
        out: Root folder; the set goes to ``out/name`` and its items to
            ``out/name/items.json`` (a FeatureCollection that ``stac.search`` accepts).
        name: Set name, e.g. ``base`` or ``x4``.
        size: Side of the 10 m grid in pixels (a multiple of 512 keeps chunks whole).
        dates: Number of scenes (at most 8).
        seed: Random seed.

    Returns:
        ``{"items": path, "grid_bounds": (minx, miny, maxx, maxy), "size": size,
        "dates": [...], "bytes_on_disk": n}``.
    """
    from rasterio.enums import Resampling
    from rasterio.transform import Affine
    from rasterio.warp import transform_bounds, transform_geom

    md = _make_data_module()
    root = out / name
    marker = root / "done.json"
    if marker.exists():
        return json.loads(marker.read_text())
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng([seed, size, dates])
    xc, yc = md.utm_point(*CENTER)
    mgrs, ulx, uly = md.mgrs_tile(xc, yc)
    half = size * 10 / 2
    x0 = ulx + 60 * math.floor((xc - half - ulx) / 60)
    y0 = uly - 60 * math.floor((uly - (yc + half)) / 60)
    t10 = Affine(10, 0, x0, 0, -10, y0)
    t20 = t10 @ Affine.scale(2)
    bounds = (x0, y0 - size * 10, x0 + size * 10, y0)
    lc = md.landcover(rng, "river", size)
    texture = md.smooth_noise(rng, (size, size), 3.0)
    ring = [[bounds[0], bounds[3]], [bounds[2], bounds[3]], [bounds[2], bounds[1]],
            [bounds[0], bounds[1]], [bounds[0], bounds[3]]]  # fmt: skip
    geom = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    bbox = list(transform_bounds(f"EPSG:{EPSG}", "EPSG:4326", *bounds))
    features = []
    n20 = size // 2
    for d in range(dates):
        when = f"2021-{1 + d % 12:02d}-{5 + 3 * d:02d}T11:35:41.000000Z"
        item_id = f"S2A_{mgrs}_{when[:10].replace('-', '')}_0_L2A"
        cloud_frac, green = CLOUD[d % len(CLOUD)], GREEN[d % len(GREEN)]
        refl = md.reflectance(rng, lc, green, texture)
        refl *= 1.0 + 0.015 * rng.standard_normal(refl.shape, dtype=np.float32)  # sensor noise
        scl = md.scl_clear(rng, md.mode2x2(lc), green)
        field = md.smooth_noise(rng, (n20, n20), 7 * size / 256)
        cloud = field > np.quantile(field, 1 - cloud_frac)
        shadow = np.roll(np.roll(cloud, 6, axis=0), -4, axis=1) & ~cloud
        scl[shadow] = md.SCL_SHADOW
        scl[cloud] = md.SCL_CLOUD_HIGH
        c10 = np.kron(cloud, np.ones((2, 2), bool))
        s10 = np.kron(shadow, np.ones((2, 2), bool))
        refl[:, s10] *= 0.35
        refl[:, c10] = 0.3 * refl[:, c10] + 0.7 * (5000 + 800 * texture[c10])
        dn = np.round(refl).astype(np.uint16)
        dn20 = np.round(md.mean2x2(refl)).astype(np.uint16)
        del refl
        assets: dict[str, dict] = {}
        for i, (key, band, res, *_rest) in enumerate(md.BANDS):
            data, t, n = (dn[i], t10, size) if res == 10 else (dn20[i], t20, n20)
            path = root / item_id / f"{band}.tif"
            md.write_cog(path, data, t, f"EPSG:{EPSG}", 0, Resampling.average)
            assets[key] = _asset(path, t, n, "uint16", res)
        path = root / item_id / "SCL.tif"
        md.write_cog(path, scl, t20, f"EPSG:{EPSG}", 0, Resampling.nearest)
        assets["scl"] = _asset(path, t20, n20, "uint8", 20)
        features.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": [
                    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                ],
                "id": item_id,
                "collection": "sentinel-2-l2a",
                "bbox": bbox,
                "geometry": geom,
                "properties": {
                    "datetime": when,
                    "platform": "sentinel-2a",
                    "eo:cloud_cover": round(100 * float(np.isin(scl, (8, 9, 10)).mean()), 3),
                    "proj:epsg": EPSG,
                    "proj:code": f"EPSG:{EPSG}",
                    "s2:mgrs_tile": mgrs,
                },
                "links": [],
                "assets": assets,
            }
        )
    items = root / "items.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    info = {
        "items": str(items),
        "grid_bounds": list(bounds),
        "bbox": bbox,
        "size": size,
        "dates": [f["properties"]["datetime"] for f in features],
        "bytes_on_disk": sum(p.stat().st_size for p in root.rglob("*.tif")),
    }
    marker.write_text(json.dumps(info))
    return info


def _asset(path: Path, t: Any, n: int, dtype: str, res: int) -> dict[str, Any]:
    return {
        "href": str(path),
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "proj:shape": [n, n],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "raster:bands": [{"nodata": 0, "data_type": dtype, "spatial_resolution": res}],
        "roles": ["data"],
    }


def decoded_bytes(info: dict[str, Any]) -> int:
    """Bytes of decoded pixels both paths produce: dates x 11 bands x H x W x 2 (uint16)."""
    return len(info["dates"]) * 11 * info["size"] ** 2 * 2


def _region(info: dict[str, Any]) -> Any:
    from senland_geo.regions import Region

    dates = sorted(d[:10] for d in info["dates"])
    return Region(
        name="bench-cube",
        bbox=tuple(info["bbox"]),
        epsg=EPSG,
        time_range=(dates[0], dates[-1]),
        catalog=info["items"],
        labels=None,
        grid_bounds=tuple(info["grid_bounds"]),
    )


# --------------------------------------------------------------------------------------------
# Child processes (one measurement each, so peak RSS is that measurement's alone)
# --------------------------------------------------------------------------------------------
def vm_hwm_mib() -> float:
    """This process's peak RSS (``VmHWM``), in MiB.

    ``ru_maxrss`` of a child is not used: Linux carries the parent's high-water mark over
    fork + exec, so a child of a big parent reports the parent's peak. ``VmHWM`` belongs
    to the address space, which exec replaces.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _drop(block: np.ndarray) -> np.ndarray:
    """Drop a computed chunk (times the reads alone): one flag in its place."""
    return np.ones((1,) * block.ndim, dtype=bool)


def child_stack(info: dict[str, Any], threads: int) -> dict[str, Any]:
    """Compute senland-geo's stackstac cube (all 11 bands) and drop it: the read path alone.

    Returns:
        Seconds, peak RSS.
    """
    import dask
    import dask.threaded

    from senland_geo import cube, stac

    rss_imports = vm_hwm_mib()
    region = _region(info)
    with dask.config.set(scheduler="threads", num_workers=threads):
        t0, c0 = time.perf_counter(), time.process_time()
        items = stac.search(region)
        stacked = cube.stack(items, region, [*region.bands, "SCL"], chunksize=WINDOW)
        # One flag per chunk, computed on the threads: da.store would build a dask delayed,
        # which imports distributed (0.1-0.3 s) and would bill it to the read path.
        flags = stacked.data.map_blocks(_drop, chunks=(1,) * 4, dtype=bool)
        dask.compute(flags, scheduler=dask.threaded.get)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_after_imports_mib": rss_imports,
        "peak_rss_mib": vm_hwm_mib(),
    }


def child_build(
    info: dict[str, Any], out: Path, threads: int, composite: str, compression: str = "lz4"
) -> dict[str, Any]:
    """Build the cube with senland-geo into ``out`` and time it.

    Returns:
        Seconds for the whole build and for the Zarr write phase, RSS after imports.
    """
    import dask

    from senland_geo import store
    from senland_geo.build import build_region_cube

    rss_imports = vm_hwm_mib()
    report: list[store.WriteReport] = []
    with dask.config.set(num_workers=threads):
        t0, c0 = time.perf_counter(), time.process_time()
        build_region_cube(
            _region(info),
            out,
            composite=composite,
            overwrite=True,
            scheduler="threads",
            report=report,
            compression=compression,
        )
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "write_seconds": report[0].seconds,
        "blocks": report[0].blocks,
        "store_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
        "rss_after_imports_mib": rss_imports,
        "peak_rss_mib": vm_hwm_mib(),
    }


def child_raw(info: dict[str, Any], threads: int) -> dict[str, Any]:
    """Read every band of every date window by window with rasterio and time it.

    Each (date, band) file is one task on a pool of ``threads`` threads; each task opens
    the COG once and reads 512 px windows of the 10 m grid into a uint16 buffer.

    Returns:
        Seconds, decoded bytes and per date/band pixel sums (to check the build).
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    import senland_geo.cube  # noqa: F401  (same imports as the build child)

    rss_imports = vm_hwm_mib()
    features = json.loads(Path(info["items"]).read_text())["features"]
    features.sort(key=lambda f: f["properties"]["datetime"])
    size = info["size"]
    keys = [k for k in features[0]["assets"]]

    def read_file(href: str, factor: int) -> tuple[int, int]:
        total, nbytes = 0, 0
        with rasterio.open(href) as src:
            for row in range(0, size, WINDOW):
                for col in range(0, size, WINDOW):
                    h, w = min(WINDOW, size - row), min(WINDOW, size - col)
                    win = Window(col // factor, row // factor, w // factor, h // factor)
                    arr = src.read(
                        1,
                        window=win,
                        out_shape=(h, w),
                        out_dtype="uint16",
                        resampling=Resampling.nearest,
                    )
                    total += int(arr.sum(dtype=np.uint64))
                    nbytes += arr.nbytes
        return total, nbytes

    jobs = []
    for f in features:
        for k in keys:
            a = f["assets"][k]
            factor = round(a["proj:transform"][0] / 10)
            jobs.append((f["id"], k, a["href"], factor))
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        t0, c0 = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda j: read_file(j[2], j[3]), jobs))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    sums: dict[str, list[int]] = {}
    for (item_id, key, _h, _f), (total, _n) in zip(jobs, results, strict=True):
        if key != "scl":
            sums.setdefault(item_id, []).append(total)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bytes": sum(n for _t, n in results),
        "sums": [sums[f["id"]] for f in features],
        "rss_after_imports_mib": rss_imports,
        "peak_rss_mib": vm_hwm_mib(),
    }


def run_child(args: list[str], workdir: Path) -> dict[str, Any]:
    """Run this script as a child; return its JSON result plus the load average."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    load_before = os.getloadavg()
    with tempfile.TemporaryFile(dir=workdir) as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=REPO)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(
                f"child {args} failed ({proc.returncode}): {err.read().decode()[-3000:]}"
            )
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["load_before"] = [round(v, 2) for v in load_before]
    result["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return result


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
def zarr_sums(path: Path) -> list[list[int]]:
    """Per date and band sums of the stored reflectance (read chunk by chunk)."""
    import dask
    import xarray as xr

    with dask.config.set(scheduler="threads"):
        ds = xr.open_zarr(path, consolidated=False)
        sums = ds["reflectance"].astype("uint64").sum(("y", "x")).compute()
    return [[int(v) for v in row] for row in sums.values]


def _finite_ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b > 0 else float("nan")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints (and returns) one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    parser.add_argument("--size", type=int, default=1024, help="base grid side, 10 m px")
    parser.add_argument("--dates", type=int, default=4, help="scenes per cube (<= 8)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating raw/build runs")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--composite", choices=("none", "median", "monthly"), default="none",
        help="composite of the build (none = stack -> Zarr, the pure data path)",
    )  # fmt: skip
    parser.add_argument(
        "--compression", choices=("lz4", "zstd", "none"), default="lz4",
        help="chunk compression of the build (none isolates the codec's cost)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="keep data here (reused when present)")
    parser.add_argument("--child", choices=("build", "raw", "stack"), help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        info = json.loads(args.info)
        if args.child == "build":
            result = child_build(info, args.out, args.threads, args.composite, args.compression)
        elif args.child == "stack":
            result = child_stack(info, args.threads)
        else:
            result = child_raw(info, args.threads)
        print(json.dumps(result))
        return result

    if args.quick:
        args.size, args.dates, args.repeats = 256, 2, 1
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-cube-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        sizes = {"base": args.size, "x4": 2 * args.size}
        t0 = time.perf_counter()
        infos = {k: generate(workdir, f"{k}-{n}-{args.dates}", n, args.dates)
                 for k, n in sizes.items()}  # fmt: skip
        gen_seconds = time.perf_counter() - t0
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {k: {"raw": [], "build": [], "stack": []}
                                                             for k in sizes}  # fmt: skip
        checks: dict[str, bool] = {}
        for rep in range(args.repeats):
            for key, info in infos.items():
                common = ["--info", json.dumps(info), "--threads", str(args.threads)]
                raw = run_child(["--child", "raw", *common], workdir)
                runs[key]["stack"].append(run_child(["--child", "stack", *common], workdir))
                out = workdir / f"cube-{key}.zarr"
                build = run_child(
                    ["--child", "build", *common, "--out", str(out),
                     "--composite", args.composite, "--compression", args.compression],
                    workdir,
                )  # fmt: skip
                if args.composite == "none" and rep == 0:
                    checks[key] = zarr_sums(out) == raw.pop("sums")
                raw.pop("sums", None)
                shutil.rmtree(out, ignore_errors=True)
                runs[key]["raw"].append(raw)
                runs[key]["build"].append(build)
        result = summarise(args, infos, runs, checks)
        result["generate_seconds"] = round(gen_seconds, 2)
        result["total_seconds"] = round(time.perf_counter() - t_start, 2)
        result["load_average_start"] = [round(v, 2) for v in load_start]
        result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        from senland_geo import hw

        result["hardware"] = hw.describe()
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(json.dumps(result, indent=1))
    return result


def summarise(
    args: argparse.Namespace,
    infos: dict[str, dict[str, Any]],
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    checks: dict[str, bool],
) -> dict[str, Any]:
    """Turn the child measurements into the JSON figures (best of the repeats)."""
    sizes: dict[str, Any] = {}
    for key, info in infos.items():
        nbytes = decoded_bytes(info)
        raw_mbs = [nbytes / r["seconds"] / 1e6 for r in runs[key]["raw"]]
        build_mbs = [nbytes / r["seconds"] / 1e6 for r in runs[key]["build"]]
        stack_mbs = [nbytes / r["seconds"] / 1e6 for r in runs[key]["stack"]]
        paired = [b / r for b, r in zip(build_mbs, raw_mbs, strict=True)]
        sizes[key] = {
            "grid_px": [info["size"], info["size"]],
            "dates": len(info["dates"]),
            "bands_decoded": 11,
            "decoded_mb": round(nbytes / 1e6, 2),
            "cogs_on_disk_mb": round(info["bytes_on_disk"] / 1e6, 2),
            "raw_mb_s": round(max(raw_mbs), 2),
            "build_mb_s": round(max(build_mbs), 2),
            "ratio_build_over_raw": _finite_ratio(max(build_mbs), max(raw_mbs)),
            "stack_only_mb_s": round(max(stack_mbs), 2),
            "ratio_stack_only_over_raw": _finite_ratio(max(stack_mbs), max(raw_mbs)),
            "paired_ratios": [round(p, 4) for p in paired],
            "raw_mb_s_runs": [round(v, 2) for v in raw_mbs],
            "build_mb_s_runs": [round(v, 2) for v in build_mbs],
            "store_mb": round(runs[key]["build"][0]["store_bytes"] / 1e6, 2),
            "build_write_seconds": [round(r["write_seconds"], 3) for r in runs[key]["build"]],
            "build_seconds": [round(r["seconds"], 3) for r in runs[key]["build"]],
            "build_cpu_seconds": [round(r["cpu_seconds"], 3) for r in runs[key]["build"]],
            "raw_cpu_seconds": [round(r["cpu_seconds"], 3) for r in runs[key]["raw"]],
            "stack_only_cpu_seconds": [round(r["cpu_seconds"], 3) for r in runs[key]["stack"]],
            # CPU time is what a busy machine distorts least: raw CPU / build CPU estimates
            # the throughput ratio on a quiet machine with as many cores as threads.
            "cpu_ratio_raw_over_build": _finite_ratio(
                min(r["cpu_seconds"] for r in runs[key]["raw"]),
                min(r["cpu_seconds"] for r in runs[key]["build"]),
            ),
            "raw_seconds": [round(r["seconds"], 3) for r in runs[key]["raw"]],
            "peak_rss_build_mib": round(max(r["peak_rss_mib"] for r in runs[key]["build"]), 1),
            "peak_rss_raw_mib": round(max(r["peak_rss_mib"] for r in runs[key]["raw"]), 1),
            "peak_rss_stack_only_mib": round(max(r["peak_rss_mib"] for r in runs[key]["stack"]), 1),
            "rss_after_imports_build_mib": round(runs[key]["build"][0]["rss_after_imports_mib"], 1),
            "stored_pixels_match_raw": checks.get(key),
            "load_during": [
                r["load_before"] for r in runs[key]["raw"] + runs[key]["stack"] + runs[key]["build"]
            ],
        }
    base, big = sizes["base"], sizes["x4"]
    rss_ratio = _finite_ratio(big["peak_rss_build_mib"], base["peak_rss_build_mib"])
    ratio = min(base["ratio_build_over_raw"], big["ratio_build_over_raw"])
    return {
        "benchmark": "cube-build-vs-raw-rasterio",
        "quick": bool(args.quick),
        "composite": args.composite,
        "compression": args.compression,
        "threads": args.threads,
        "repeats": args.repeats,
        "units": "MB = 1e6 bytes of decoded uint16 pixels on the 10 m grid "
        "(dates x 11 bands x H x W x 2), same count for both paths; best of repeats",
        "sizes": sizes,
        "throughput_ratio": ratio,
        "throughput_target": 0.8,
        "throughput_target_met": bool(ratio >= 0.8),
        "rss_ratio_x4_over_base": rss_ratio,
        "rss_target": 1.2,
        "rss_target_met": bool(rss_ratio <= 1.2),
    }


if __name__ == "__main__":
    main()
