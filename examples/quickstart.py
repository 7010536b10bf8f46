"""From nothing to a report: build the sample cube, train briefly, map it, write the report.

Usage::

    python examples/quickstart.py WORKDIR [--epochs 2]

Runs offline on the embedded Brandenburg sample (a few minutes on two CPU cores):
``WORKDIR/brandenburg.zarr``, ``WORKDIR/run/`` (checkpoint, metrics, history, split),
``WORKDIR/run/map.tif`` and ``WORKDIR/run/report.html``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senland_geo.build import build_region_cube
from senland_geo.metrics import format_metrics
from senland_geo.predict import predict_cube
from senland_geo.regions import get_region
from senland_geo.report import write_report
from senland_geo.train import TrainConfig, train


def main() -> None:
    """Parse arguments and run the four steps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--patches-per-epoch", type=int, default=64)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cube = args.workdir / "brandenburg.zarr"
    if not cube.exists():
        build_region_cube(get_region("brandenburg"), cube)
    run = args.workdir / "run"
    config = TrainConfig(
        model="unet-resnet34-slim",
        epochs=args.epochs,
        patches_per_epoch=args.patches_per_epoch,
        batch_size=8,
    )
    print(format_metrics(train(cube, run, config)))
    predict_cube(cube, run / "checkpoint.pt", run / "map.tif")
    print(f"report: {write_report(run, run / 'report.html')}")


if __name__ == "__main__":
    main()
