"""Real-data evaluation: U-Nets vs a per-pixel random forest, and AgrUNet on a series.

1. Brandenburg (embedded sample cube, 10 bands, WorldCover labels): ``unet-resnet34`` and
   ``unet-gn`` trained with :func:`senland_geo.train.train` (east third held out, a
   validation block carved from the training side), and a RandomForest on pixels of the
   same training boxes; all scored on the same holdout.
2. Slovenia (eo-learn sample, 5 real L1C scenes, 13 bands, 101 x 100 px, LULC mapped to
   WorldCover): east third of the 1 km tile held out; U-Nets on the clearest single scene,
   RandomForest on the same pixels (single scene and 5-scene stack), AgrUNet (small
   filters) on the five-scene series.

Prints one JSON document (and writes it to ``--out``). Not a test: it trains for minutes.

    python benchmarks/eval_real_data.py --epochs 8 --out eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from senland_geo import hw
from senland_geo.evaluate import (
    clearest_scene,
    column_split,
    load_slovenia,
    random_forest_in_memory,
    random_forest_on_cube,
    summary,
    train_in_memory,
)

SHARED = Path(os.environ.get("SENLAND_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))


def brandenburg(args: argparse.Namespace, work: Path) -> dict:
    """U-Nets vs forest on the Brandenburg holdout."""
    from senland_geo.build import build_region_cube
    from senland_geo.regions import get_region
    from senland_geo.splits import Split
    from senland_geo.train import TrainConfig, train

    cube = Path(args.cube) if args.cube else work / "brandenburg.zarr"
    if not cube.exists():
        build_region_cube(get_region("brandenburg"), cube)
    out: dict = {"cube": str(cube)}
    run_dir = None
    for model in ("unet-resnet34", "unet-gn"):
        config = TrainConfig(
            model=model, epochs=args.epochs, patches_per_epoch=args.patches, batch_size=16,
            lr=2e-3, precision=args.precision, patience=args.patience, eval_tile=256,
            plots=True,
        )  # fmt: skip
        run_dir = work / f"brandenburg-{model}"
        t0 = time.perf_counter()
        m = train(cube, run_dir, config, progress=False)
        out[model] = {
            **summary(m),
            "val_macro_dice": round(m["validation"]["macro_dice"], 4),
            "best_epoch": m["best_epoch"],
            "epochs_run": m["epochs_run"],
            "train_images_per_second": m["train_images_per_second"],
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "run": str(run_dir),
        }
    split = Split.load(run_dir / "split.json")
    val = json.loads((run_dir / "validation.json").read_text())["validation"]
    rf = random_forest_on_cube(cube, split.train, split.test, max_pixels=args.rf_pixels)
    out["random_forest"] = {**summary(rf), "train_pixels": rf["train_pixels"]}
    out["split"] = {"train": split.train, "validation": val, "test": split.test}
    return out


def slovenia(args: argparse.Namespace) -> dict:
    """U-Nets (single scene) and AgrUNet (series) vs forest on the Slovenia tile."""
    data = load_slovenia(SHARED / "slovenia-eolearn")
    cols = column_split(data.labels.shape[1])
    scene = clearest_scene(data.scenes, data.bands)
    single = data.scenes[scene]
    out: dict = {
        "scene_used_for_single_scene_models": scene,
        "columns": {k: [v.start, v.stop] for k, v in cols.items()},
        "label_pixels": {part: int((data.labels[:, s] != 255).sum()) for part, s in cols.items()},
    }
    common = dict(
        epochs=args.slo_epochs, steps_per_epoch=8, batch_size=8, patch_size=32,
        patience=args.patience, precision=args.precision,
    )  # fmt: skip
    for model in ("unet-resnet34", "unet-gn"):
        out[model] = _short(train_in_memory(model, single, data.labels, cols, **common))
    out["random_forest"] = _short(random_forest_in_memory(single, data.labels, cols))
    out["random_forest_5_scenes"] = _short(random_forest_in_memory(data.scenes, data.labels, cols))
    agr = train_in_memory(
        "agrunet", data.scenes, data.labels, cols,
        model_options={"filters": [16, 32], "hidden": 32}, **common,
    )  # fmt: skip
    out["agrunet_5_scenes"] = _short(agr)
    return out


def _short(m: dict) -> dict:
    keep = {k: m[k] for k in ("validation", "best_epoch", "epochs_run", "seconds",
                              "parameters", "train_pixels") if k in m}  # fmt: skip
    return {**summary(m), **keep}


def main() -> None:
    """Run both evaluations and print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="Brandenburg epochs")
    p.add_argument("--patches", type=int, default=256, help="Brandenburg patches per epoch")
    p.add_argument("--slo-epochs", type=int, default=30, help="Slovenia epochs (8 steps each)")
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--rf-pixels", type=int, default=20_000)
    p.add_argument("--cube", default=None, help="Existing Brandenburg cube (else built)")
    p.add_argument("--work", default=None, help="Folder for runs (default: a temp dir)")
    p.add_argument("--out", default=None, help="Also write the JSON here")
    p.add_argument("--only", choices=["brandenburg", "slovenia"], default=None)
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="senland-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict = {"hardware": hw.describe(), "settings": vars(args)}
    if args.only in (None, "slovenia"):
        result["slovenia"] = slovenia(args)
    if args.only in (None, "brandenburg"):
        result["brandenburg"] = brandenburg(args, work)
    for name in ("brandenburg", "slovenia"):
        if name in result:
            r = result[name]
            rf = r["random_forest"]["miou"]
            r["unet_minus_rf_miou"] = {
                m: round(r[m]["miou"] - rf, 4) for m in ("unet-resnet34", "unet-gn")
            }
            r["goal_unets_beat_rf_by_0.05"] = bool(min(r["unet_minus_rf_miou"].values()) >= 0.05)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(
        result, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)
    )
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
