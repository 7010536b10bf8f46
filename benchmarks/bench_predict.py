"""Benchmark streaming prediction: km²/s end to end, pipeline efficiency, peak RSS at 1x / 16x.

Usage::

    python benchmarks/bench_predict.py [--size 512] [--tile 512] [--overlap 192] [--block 512]
        [--blend hann|crop] [--batch-size N] [--out F.json]

Defaults are ``senland-geo predict``'s (tile, overlap, batch size ~0.5 Mpx per pass).

Each area runs in its own subprocess (so its peak RSS is its own). Inside one run the
script (1) writes a synthetic 10-band cube of ``size`` x ``size`` (1x) or ``4 size`` x
``4 size`` (16x) pixels at 10 m, (2) times the whole ``predict_cube`` call (read, blend,
write GeoTIFF, COG with overviews) and (3) times the model alone on the same number of
tiles, already in memory, with the same batch size. Pipeline efficiency is end-to-end
tiles/s divided by model-only tiles/s of the same run (1.0 = reading and writing cost
nothing visible). The model is the shipped sample's architecture (``unet-resnet34-slim``,
width 0.375), randomly initialised: the speed is that of the real one. Peak RSS is taken in a
third process per area that runs ``predict_cube`` alone; that process also samples its RSS
every 10 ms and reports the peak of each phase (setup: model load and threads; loop: read,
predict, write the GeoTIFF; cog: COG conversion with overviews). Prints JSON naming the hardware
(``senland_geo.hw.describe()``) and the load averages around each run.

The children run with ``OMP_WAIT_POLICY=PASSIVE`` unless it is set (as ``senland-geo
predict`` does). ``--busy N`` runs N busy-looping processes for the whole benchmark: a
controlled background load, to compare figures with and without load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from senland_geo.predict import (
    BLENDS,
    DEFAULT_BLEND,
    DEFAULT_BLOCK,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    default_batch_size,
)


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries it over ``execve``, so a child started
    by a big parent (this script after writing the 16x cube) reports the parent's peak.
    """
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _make_inputs(root: Path, size: int) -> tuple[Path, Path]:
    import torch
    import xarray as xr
    from rasterio.transform import from_origin

    from senland_geo import registry, store
    from senland_geo.checkpoint import save_checkpoint
    from senland_geo.classes import WORLDCOVER
    from senland_geo.regions import S2_BANDS_10

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    field = np.sin(yy / 37.0) + np.cos(xx / 53.0) + 0.5 * np.sin((xx + yy) / 19.0)
    cls = np.digitize(field, [-1.0, 0.0, 0.8])
    sig = rng.uniform(500, 4000, size=(4, 10)).astype(np.float32)
    data = np.empty((1, 10, size, size), np.uint16)
    for b in range(10):
        data[0, b] = np.clip(sig[cls, b] + rng.normal(0, 60, (size, size)), 1, 1e4)
    da = xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array(["2021-06-01"], dtype="datetime64[ns]"),
            "band": list(S2_BANDS_10),
            "y": 5e6 - 10 * (np.arange(size) + 0.5),
            "x": 4e5 + 10 * (np.arange(size) + 0.5),
        },
    )
    da = da.rio.write_crs("EPSG:32628").rio.write_transform(from_origin(4e5, 5e6, 10, 10))
    ds = store.cube_to_dataset(da, attrs={"items": ["synthetic"]})
    ds.attrs["class_table"] = "esa-worldcover"
    cube = store.write_cube(ds, root / "cube.zarr")
    del data, ds, da
    torch.manual_seed(0)
    net = registry.load("models", "unet-resnet34-slim")(in_channels=10, num_classes=11)
    meta = {
        "model": "unet-resnet34-slim",
        "model_options": {},
        "bands": list(S2_BANDS_10),
        "normalization": {"mean": [2000.0] * 10, "std": [900.0] * 10},
        "classes": WORLDCOVER.to_dict(),
        "temporal": False,
    }
    return cube, save_checkpoint(root / "model.pt", net, meta)


def _model_only(predictor, reader, batches, n: int, batch_size: int) -> float:
    sample = np.concatenate([reader.read(b)[0] for b in batches[:2]])
    sample = np.concatenate([sample] * (-(-batch_size // len(sample))))[:batch_size]
    t0 = time.perf_counter()
    done = 0
    while done < n:
        predictor(sample[: min(batch_size, n - done)])
        done += min(batch_size, n - done)
    return time.perf_counter() - t0


def child(
    root: Path, size: int, tile: int, overlap: int, block: int, batch_size: int, blend: str
) -> dict:
    """One area in this process: end-to-end and model-only timings, peak RSS."""
    from senland_geo import hw
    from senland_geo.predict import (
        CubeReader,
        build_predictor,
        context_of,
        plan_batches,
        predict_cube,
    )

    load_start = os.getloadavg()
    cube, ckpt = root / "cube.zarr", root / "model.pt"
    # Warm-up (first-call allocations, oneDNN primitive creation) on a small read.
    predictor = build_predictor(ckpt, batch_size)
    reader = CubeReader(cube, list(range(10)), tile, False, context_of(overlap))
    batches = plan_batches(size, size, tile, block)
    x, _, d = reader.read(batches[0])
    predictor(x[:1], d[:1])
    n = len([w for b in batches for w in b])
    model_seconds = _model_only(predictor, reader, batches, n, batch_size)
    stats: dict = {}
    predict_cube(
        cube, ckpt, root / "map.tif", tile=tile, overlap=overlap, block=block,
        batch_size=batch_size, progress=False, stats=stats, blend=blend,
    )  # fmt: skip
    # Model only: the same number of tiles, already in memory, same batch size; timed
    # before and after the end-to-end run (the machine is shared: load drifts).
    model_seconds += _model_only(predictor, reader, batches, stats["tiles"], batch_size)
    model_seconds /= 2
    rss = peak_rss_kib()
    e2e = n / stats["seconds"]
    model = n / model_seconds
    return {
        "pixels": size * size,
        "km2": round(stats["km2"], 3),
        "tiles": n,
        "end_to_end_seconds": round(stats["seconds"], 2),
        "km2_per_second": round(stats["km2"] / stats["seconds"], 4),
        "end_to_end_tiles_per_second": round(e2e, 3),
        "model_only_tiles_per_second": round(model, 3),
        "model_seconds_inside_pipeline": round(stats["model_seconds"], 2),
        "phase_seconds": {k: round(stats[f"{k}_seconds"], 3) for k in ("setup", "loop", "cog")},
        "model_only_seconds": round(model_seconds, 3),
        "pipeline_efficiency": round(e2e / model, 3),
        "peak_rss_mib_with_model_only_timing": round(rss / 1024, 1),
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "hardware": hw.describe("cpu"),
    }


def main() -> None:
    """Run the 1x and 16x areas in subprocesses and print one JSON document."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="side of the 1x area in pixels")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile (core) side in pixels")
    ap.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    ap.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="pixels per unit of work")
    ap.add_argument("--blend", choices=BLENDS, default=DEFAULT_BLEND, help="as predict's")
    ap.add_argument("--batch-size", type=int, default=None, help="default: predict's")
    ap.add_argument("--busy", type=int, default=0, help="busy-looping processes as load")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.batch_size = args.batch_size or default_batch_size(args.tile, args.overlap)
    if args.child is not None:
        if args.rss_only:  # predict_cube alone: its peak RSS, nothing else in the process
            print(json.dumps(_rss_only(args)))
            return
        result = child(
            args.root, args.child, args.tile, args.overlap, args.block, args.batch_size, args.blend
        )
        print(json.dumps(result))
        return
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        runs = _run_areas(args, env)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    hardware = runs["1x"].pop("hardware")
    runs["16x"].pop("hardware")
    result = {
        "benchmark": "senland-geo predict (streaming, in-process, reader thread + writer thread)",
        "hardware": hardware,
        "engine": hardware["engine"],
        "omp_wait_policy": env["OMP_WAIT_POLICY"],
        "busy_processes": args.busy,
        "model": "unet-resnet34-slim (width 0.375, 10 bands, 11 classes)",
        "tile": args.tile,
        "overlap": args.overlap,
        "block": args.block,
        "blend": args.blend,
        "batch_size": args.batch_size,
        "runs": runs,
        "km2_per_second": runs["16x"]["km2_per_second"],
        "pipeline_efficiency": runs["16x"]["pipeline_efficiency"],
        "peak_rss_mib": {k: v["peak_rss_mib_predict_only"] for k, v in runs.items()},
        "peak_rss_growth_16x": round(
            runs["16x"]["peak_rss_mib_predict_only"] / runs["1x"]["peak_rss_mib_predict_only"] - 1,
            3,
        ),
        "note": "2 shared vCPUs; other jobs may run: absolute speeds under load are lower bounds",
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _rss_only(args: argparse.Namespace) -> dict:
    """Run ``predict_cube`` alone, sampling RSS; peak RSS overall and per phase (MiB)."""
    import threading

    from senland_geo.predict import predict_cube

    page = os.sysconf("SC_PAGE_SIZE")
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        with open("/proc/self/statm") as f:
            while not stop.wait(0.01):
                f.seek(0)
                samples.append((time.perf_counter(), int(f.read().split()[1]) * page))

    thread = threading.Thread(target=sample, daemon=True)
    stats: dict = {}
    t0 = time.perf_counter()
    thread.start()
    predict_cube(
        args.root / "cube.zarr", args.root / "model.pt", args.root / "rss.tif",
        tile=args.tile, overlap=args.overlap, block=args.block,
        batch_size=args.batch_size, progress=False, stats=stats, blend=args.blend,
    )  # fmt: skip
    stop.set()
    thread.join()
    loop0 = t0 + stats["setup_seconds"]
    cog0 = loop0 + stats["loop_seconds"]
    phases = {"setup": (t0, loop0), "loop": (loop0, cog0), "cog": (cog0, float("inf"))}
    mib = 1024 * 1024
    return {
        "peak_rss_kib": peak_rss_kib(),
        "seconds": round(stats["seconds"], 3),
        "phase_peak_rss_mib": {
            k: round(max((r for t, r in samples if a <= t < b), default=0) / mib, 1)
            for k, (a, b) in phases.items()
        },
    }


def _run_areas(args: argparse.Namespace, env: dict[str, str]) -> dict[str, dict]:
    """Run the 1x and 16x areas, each in its own subprocesses (timings, then RSS only)."""
    runs = {}
    for name, size in (("1x", args.size), ("16x", 4 * args.size)):
        with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
            _make_inputs(Path(tmp), size)  # here, so the child's peak RSS is prediction only
            cmd = [sys.executable, __file__, "--child", str(size), "--root", tmp,
                   "--tile", str(args.tile), "--overlap", str(args.overlap),
                   "--block", str(args.block), "--blend", args.blend,
                   "--batch-size", str(args.batch_size)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            proc = subprocess.run(
                [*cmd, "--rss-only"], capture_output=True, text=True, check=True, env=env
            )
            rss = json.loads(proc.stdout.strip().splitlines()[-1])
        runs[name]["peak_rss_mib_predict_only"] = round(rss["peak_rss_kib"] / 1024, 1)
        runs[name]["phase_peak_rss_mib_predict_only"] = rss["phase_peak_rss_mib"]
    return runs


if __name__ == "__main__":
    main()
