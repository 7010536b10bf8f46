"""The ``senland-geo`` command line: thin click commands, one library call each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from senland_geo import __version__
from senland_geo.errors import UserError

BBOX = click.option(
    "--bbox",
    nargs=4,
    type=float,
    default=None,
    metavar="W S E N",
    help="Override the region's bbox (EPSG:4326 degrees).",
)
CATALOG = click.option(
    "--catalog",
    default=None,
    help="Provider name (earth-search, planetary-computer), STAC API URL or local catalog path.",
)
START = click.option("--start", default=None, help="Override the season start (YYYY-MM-DD).")
END = click.option("--end", default=None, help="Override the season end (YYYY-MM-DD).")


@click.group()
@click.version_option(__version__, prog_name="senland-geo")
def cli() -> None:
    """Land cover and crop types from Sentinel-2, with plugin-based deep learning."""


@cli.command()
def plugins() -> None:
    """List installed plugins by kind, with their distribution and status."""
    from senland_geo import registry

    for kind in registry.GROUPS:
        click.echo(f"{kind}:")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = registry.check_all(kind)
        for info, error in report:
            status = "ok" if error is None else f"BROKEN: {error}"
            click.echo(
                f"  {info.name:<22} {info.distribution} {info.version:<10} {info.value}  [{status}]"
            )


@cli.group(invoke_without_command=True)
@click.pass_context
def regions(ctx: click.Context) -> None:
    """List the installed regions (or show one with 'regions show NAME')."""
    if ctx.invoked_subcommand is not None:
        return
    from senland_geo import registry
    from senland_geo.regions import get_region

    for name in registry.names("regions"):
        try:
            r = get_region(name)
            click.echo(f"{name:<16} EPSG:{r.epsg:<6} {r.catalog:<20} {r.description}")
        except UserError as exc:
            click.echo(f"{name:<16} BROKEN: {exc}")


@regions.command("show")
@click.argument("name")
def regions_show(name: str) -> None:
    """Print one region as JSON."""
    from senland_geo.regions import get_region

    region = get_region(name)
    data = region.to_dict()
    data["output_bounds"] = region.output_bounds()
    data["classes"] = region.classes.names
    click.echo(json.dumps(data, indent=2))


@cli.command()
@click.option("--region", "region_name", required=True, help="Region plugin name.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output *.zarr.")
@CATALOG
@BBOX
@START
@END
@click.option(
    "--composite",
    type=click.Choice(["median", "monthly", "none"]),
    default="median",
    show_default=True,
)
@click.option("--max-cloud", type=float, default=None, help="Scene cloud-cover ceiling (%).")
@click.option(
    "--season",
    nargs=2,
    type=click.IntRange(1, 12),
    default=None,
    metavar="FIRST LAST",
    help="Keep scenes of these months only, e.g. --season 1 7 (January-July).",
)
@click.option(
    "--scheduler",
    default="local",
    show_default=True,
    help="'local' (a dask.distributed LocalCluster), a scheduler address (tcp://host:8786), "
    "or 'threads'.",
)
@click.option(
    "--label-source-root",
    envvar="SENLAND_WORLDCOVER_ROOT",
    default=None,
    help="Folder or URL holding WorldCover tiles in the bucket layout "
    "(default: $SENLAND_WORLDCOVER_ROOT, else the public bucket).",
)
@click.option("--chunk", type=click.IntRange(64, 4096), default=None, help="Chunk size (px).")
@click.option("--progress/--no-progress", default=True, help="Show a chunk progress bar.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
def cube(
    region_name, out, catalog, bbox, start, end, composite, max_cloud, season, scheduler,
    label_source_root, chunk, progress, overwrite,
) -> None:  # fmt: skip
    """Build a region's cloud-masked cube with labels and store it as Zarr (resumable)."""
    from senland_geo.build import build_region_cube
    from senland_geo.pipeline import resolve_region

    region = resolve_region(region_name, bbox=bbox, start=start, end=end)
    path = build_region_cube(
        region,
        out,
        catalog=catalog,
        composite=composite,
        season=tuple(season) if season else None,
        max_cloud=max_cloud,
        overwrite=overwrite,
        label_tile_root=label_source_root,
        scheduler=scheduler,
        progress=progress,
        chunksize=chunk,
    )
    click.echo(f"wrote {path}")


@cli.command()
@click.option("--cube", "cube_path", type=click.Path(path_type=Path), default=None)
@click.option("--region", "region_name", default=None, help="Build/reuse this region's cube.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--model", default="unet-resnet34", show_default=True)
@click.option("--model-options", default=None, help="Builder options as JSON.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True),
              default=None, help="TrainConfig JSON (tune's best_config.json).")  # fmt: skip
@click.option("--epochs", type=int, default=None, help="Maximum epochs [20].")
@click.option("--patches-per-epoch", type=int, default=None, help="[512]")
@click.option("--batch-size", type=int, default=None, help="Global batch [16].")
@click.option("--lr", type=float, default=None, help="Peak AdamW learning rate [2e-3].")
@click.option("--patience", type=int, default=None, help="Early-stopping patience [20].")
@click.option("--folds", type=int, default=None, help="k > 1: blocked k-fold CV [1].")
@click.option("--backend", default=None, help="cpu, cuda, ... (default: from the hardware).")
@click.option("--precision", default=None, help="fp32 | bf16 | fp16 (cuda) [fp32].")
@click.option("--tf32", is_flag=True, default=None, help="Allow TF32 on CUDA GPUs.")
@click.option("--seed", type=int, default=None, help="[0]")
@click.option("--half-checkpoint", is_flag=True, default=None, help="Store weights as fp16.")
@click.option("--num-workers", type=int, default=None, help="DataLoader workers [0].")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="DDP processes (gloo on CPU, NCCL on GPUs).")  # fmt: skip
@click.option("--no-resume", is_flag=True, help="Ignore state.pt in the run folder.")
def train(cube_path, region_name, out, model, model_options, config_file, epochs,
          patches_per_epoch, batch_size, lr, patience, folds, backend, precision, tf32, seed,
          half_checkpoint, num_workers, nproc, no_resume) -> None:  # fmt: skip
    """Train a model on a cube with a spatial holdout; print holdout metrics.

    A validation block carved from the training side drives early stopping; a killed run
    started again with the same --out resumes after its last finished epoch.
    """
    from senland_geo.metrics import format_metrics, format_summary
    from senland_geo.pipeline import cached_cube, resolve_region
    from senland_geo.train import TrainConfig, check_cube_has_labels
    from senland_geo.train import train as run_training

    if (cube_path is None) == (region_name is None):
        raise UserError("give exactly one of --cube PATH or --region NAME")
    if cube_path is None:
        cube_path = cached_cube(resolve_region(region_name))
    check_cube_has_labels(cube_path)
    from senland_geo import registry

    settings = json.loads(config_file.read_text()) if config_file else {"model": model}
    if model != "unet-resnet34" or not config_file:
        settings["model"] = model
    if model_options:
        settings["model_options"] = json.loads(model_options)
    flags = dict(epochs=epochs, patches_per_epoch=patches_per_epoch, batch_size=batch_size,
                 lr=lr, patience=patience, folds=folds, backend=backend, precision=precision,
                 tf32=tf32, seed=seed, half_checkpoint=half_checkpoint,
                 num_workers=num_workers)  # fmt: skip
    settings.update({k: v for k, v in flags.items() if v is not None})
    if no_resume:
        settings["resume"] = False
    registry.load("models", settings["model"])  # unknown model: clear error before any work
    config = TrainConfig(**settings)
    if nproc > 1:
        from senland_geo.ddp import train_distributed

        metrics = train_distributed(cube_path, out, config, nproc)
    else:
        metrics = run_training(cube_path, out, config)
    click.echo(format_metrics(metrics))
    if metrics.get("cross_validation"):
        click.echo(format_summary(metrics))
    click.echo(
        f"trained {metrics['train_seconds']} s ({metrics['train_images_per_second']} img/s on "
        f"{metrics['hardware']['engine']}); checkpoint {Path(out) / 'checkpoint.pt'}"
    )


@cli.command()
@click.option("--cube", "cube_path", type=click.Path(path_type=Path), default=None)
@click.option("--region", "region_name", default=None, help="Build/reuse this region's cube.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Tuning folder.")
@click.option("--model", default="unet-gn", show_default=True)
@click.option("--trials", type=int, default=20, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True, help="Epochs per trial.")
@click.option("--patches-per-epoch", type=int, default=256, show_default=True)
@click.option("--batch-sizes", default="4,8,16", show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Centre of the lr range.")
@click.option("--precision", default="fp32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def tune(cube_path, region_name, out, model, trials, epochs, patches_per_epoch, batch_sizes,
         lr, precision, seed) -> None:  # fmt: skip
    """Search lr, depth/filters and batch size with Optuna (median pruning).

    Writes trials.csv, trials.md and best_config.json (use it with 'train --config').
    """
    from senland_geo import registry
    from senland_geo.pipeline import cached_cube, resolve_region
    from senland_geo.train import TrainConfig, check_cube_has_labels
    from senland_geo.tune import format_table
    from senland_geo.tune import tune as run_tune

    if (cube_path is None) == (region_name is None):
        raise UserError("give exactly one of --cube PATH or --region NAME")
    if cube_path is None:
        cube_path = cached_cube(resolve_region(region_name))
    check_cube_has_labels(cube_path)
    registry.load("models", model)
    base = TrainConfig(model=model, epochs=epochs, patches_per_epoch=patches_per_epoch, lr=lr,
                       precision=precision, seed=seed)  # fmt: skip
    sizes = [int(b) for b in batch_sizes.split(",")]
    result = run_tune(cube_path, out, base, trials=trials, batch_sizes=sizes, seed=seed)
    click.echo(format_table(result["trials"]))
    best = result["best"]
    click.echo(
        f"best trial {best['trial']}: validation macro Dice {best['val_macro_dice']:.3f} "
        f"{best['params']}; config {Path(out) / 'best_config.json'}"
    )


@cli.command()
@click.option("--region", "region_name", default=None, help="Region plugin name.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output map .tif.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None)
@click.option(
    "--cube",
    "cube_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Predict this cube store (offline) instead of building the region's.",
)
@CATALOG
@BBOX
@START
@END
@click.option(
    "--tile",
    type=int,
    default=512,
    show_default=True,
    help="Tile: the core each model pass predicts, in pixels (multiple of 32); "
    "the model's input is tile + overlap.",
)
@click.option(
    "--overlap",
    type=int,
    default=192,
    show_default=True,
    help="Overlap of neighbouring model inputs in pixels (multiple of 64): half of it is "
    "context on each side of a tile; the map changes little with --tile.",
)
@click.option(
    "--blend",
    type=click.Choice(["hann", "crop"]),
    default="hann",
    show_default=True,
    help="hann: average the overlapping predictions weighted by cosine-tapered windows "
    "(0 at each input's edge) before the arg-max; crop: keep each input's core only.",
)
@click.option(
    "--block",
    type=int,
    default=512,
    show_default=True,
    help="Pixels of a tile row read and predicted as one unit of work (one dask task); "
    "does not change the map.",
)
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Model inputs per forward pass (default: as many as fit in 0.5 Mpx, 1 for the "
    "default tile).",
)
@click.option(
    "--scheduler",
    default="local",
    show_default=True,
    help="'local' (dask LocalCluster), a dask scheduler address, or 'none' (this process).",
)
@click.option("--workers", type=int, default=None, help="LocalCluster workers (default 1).")
@click.option(
    "--probabilities",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write per-class probabilities (uint8 COG, value/254) here.",
)
@click.option(
    "--quicklook",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write a colour PNG preview here.",
)
def predict(region_name, out, checkpoint, cube_path, catalog, bbox, start, end, tile, overlap,
            blend, block, batch_size, scheduler, workers, probabilities,
            quicklook) -> None:  # fmt: skip
    """Map a region into a Cloud-Optimized GeoTIFF of land-cover codes."""
    import os

    # Reading and writing threads share the cores with the model's OpenMP threads; spinning
    # OpenMP threads starve them, and on a busy machine make 2 threads slower than 1
    # (docs/performance.md). libgomp reads this once, when torch loads: set it first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from senland_geo.pipeline import predict_region

    path = predict_region(
        region_name,
        out,
        checkpoint=checkpoint,
        catalog=catalog,
        bbox=bbox,
        start=start,
        end=end,
        tile=tile,
        overlap=overlap,
        blend=blend,
        block=block,
        batch_size=batch_size,
        scheduler=None if scheduler in ("none", "inprocess") else scheduler,
        workers=workers,
        probabilities=probabilities,
        quicklook=quicklook,
        cube=cube_path,
    )
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output .html (default: RUN_DIR/report.html).")  # fmt: skip
@click.option("--cube", "cube_path", type=click.Path(path_type=Path), default=None,
              help="Cube for the image tiles (default: the one in the checkpoint).")  # fmt: skip
@click.option("--tile", type=int, default=256, show_default=True, help="Tile side in pixels.")
def report(run_dir, out, cube_path, tile) -> None:
    """Write one self-contained HTML report of a training or prediction run."""
    from senland_geo.report import write_report

    path = write_report(run_dir, out, cube=cube_path, tile=tile)
    click.echo(f"wrote {path}")


@cli.command("new-region")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="Folder to create the distribution in.")  # fmt: skip
@BBOX
@click.option("--epsg", type=int, default=None, help="Output grid EPSG (default: UTM of bbox).")
@click.option("--catalog", default=None, help="Provider, STAC API URL or catalog path.")
@START
@END
def new_region(name, directory, bbox, epsg, catalog, start, end) -> None:
    """Scaffold a region plugin distribution (pyproject, src, tests, README)."""
    from senland_geo.scaffold import scaffold_region

    path = scaffold_region(
        name, directory, bbox=bbox, epsg=epsg, catalog=catalog, start=start, end=end
    )
    click.echo(f"wrote {path}")
    click.echo(f"next: pip install -e {path} && senland-geo regions")


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Folder for bench.json, bench.md and the two plots.",
)
@click.option("--quick", is_flag=True, help="Seconds-long CI run (tiny steps, no compile).")
@click.option(
    "--models",
    default=None,
    help="Comma-separated models (default: unet-resnet34,unet-gn).",
)
@click.option("--batch-sizes", default=None, help="Comma-separated batch sizes (default: 8,16).")
@click.option(
    "--modes",
    default=None,
    help="Comma-separated torch modes: eager, channels_last, bf16, bf16-stock, "
    "bf16-wgrad1, bf16-channels_last, compile, compile-bf16.",
)
@click.option("--steps", type=int, default=None, help="Timed steps per row.")
@click.option("--threads", type=int, default=None, help="Threads (default: physical cores).")
@click.option(
    "--scaling-threads",
    default=None,
    help="Comma-separated thread counts (default: 1..N).",
)
@click.option("--no-agrunet", is_flag=True, help="Skip the AgrUNet (T=16/32) rows.")
@click.option("--no-jax", is_flag=True, help="Skip the JAX plugin rows.")
def bench(
    out, quick, models, batch_sizes, modes, steps, threads, scaling_threads, no_agrunet, no_jax
) -> None:
    """Time training and inference (img/s) against the machine's measured matmul peak."""
    from senland_geo import bench as bench_lib

    def ints(text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split(",") if v.strip())

    overrides: dict = {}
    if models:
        overrides["models"] = tuple(m.strip() for m in models.split(",") if m.strip())
    if batch_sizes:
        overrides["batch_sizes"] = ints(batch_sizes)
    if modes:
        overrides["modes"] = tuple(m.strip() for m in modes.split(",") if m.strip())
    if steps:
        overrides["steps"] = steps
    if threads:
        overrides["threads"] = threads
    if scaling_threads is not None:
        overrides["scaling_threads"] = ints(scaling_threads)
    if no_agrunet:
        overrides["agrunet"] = None
    if no_jax:
        overrides["jax"] = False
    try:
        cfg = (bench_lib.BenchConfig.quick if quick else bench_lib.BenchConfig)(**overrides)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    result = bench_lib.run(cfg, log=click.echo, partial=lambda r: bench_lib.write_json(r, out))
    paths = bench_lib.write_outputs(result, out)
    click.echo(bench_lib.summary_table(result))
    for note in result["notes"]:
        click.echo(f"note: {note}")
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


def main() -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; no partial output was kept.", err=True)
        sys.exit(130)
