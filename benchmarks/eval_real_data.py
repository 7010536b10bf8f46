"""Real-data evaluation: U-Nets vs a per-pixel random forest, and AgrUNet on a series.

1. Brandenburg (embedded sample cube, 10 bands, WorldCover labels): the east third held
   out exactly as ``senland-geo train`` does, a validation block carved from the training
   side. ``unet-resnet34`` and ``unet-gn`` trained in memory with the training engine
   (class-weighted CE + Dice, class-balanced crops, flips/rotations, early stopping on the
   validation block); a RandomForest on every labelled pixel of the same training block,
   its size chosen on the same validation block.
2. Slovenia (eo-learn sample, 5 real L1C scenes, 13 bands, 101 x 100 px, LULC mapped to
   WorldCover): east third of the 1 km tile held out. U-Nets trained and scored on the
   clearest scene (``--slo-all-dates``: crops of all five dates as augmentation, and the
   forest learns from the same pixels, each date a sample); the forest also on the 5-date
   band stack as a second baseline; AgrUNet on the five-date series against the
   single-scene U-Nets.

3. Slovenia, blocked k-fold (``--kfold``, default 5; 0 skips): the single east holdout
   cannot measure cropland (all 11 cropland pixels of the tile lie in its test block) and
   rests on 10 built-up training pixels, so every model is also scored by blocked k-fold
   over column strips of the same tile (:mod:`senland_geo.evaluate_folds`: each strip the
   test once, the rest minus a 3 px buffer the training data), mean and std of mIoU over
   the folds. The settings are the holdout's (chosen on its validation block, nothing on
   any fold's test strip); the holdout numbers stay reported beside them. ``class_pixels``
   gives each class's pixels per split; ``miou_trained_classes`` is the mIoU over the
   classes the model had training pixels of (reported, not used for ``goal_met``).

Both holdouts: hyperparameters and the epoch count are chosen on the validation block;
then every model (networks and forests alike) is fitted again on the whole training side
(training block, buffer, validation block) and scored once on the test block. The test
score of the model fitted on the training block alone is kept as ``test_before_refit``.

Recipes are tried with ``tune_real_data.py``, which trains on the training block and scores
the validation block only; ``--trials LOG`` hands its log over: a network whose exact
recipe was tried there takes the trial's best epochs (training is deterministic) and is
only refitted and scored on the test, which saves the early-stopping phase.

Every number is on the test block only; nothing is tuned on it. ``goal_met`` per holdout:
both U-Nets beat the best forest by at least 0.05 mIoU. Prints one JSON document (and
writes it to ``--out``). Not a test: it trains for minutes (estimated 15-20 min on 2 idle
cores from the measured idle throughput; ``--quick`` is a 2-epoch smoke run).

    python benchmarks/eval_real_data.py --out benchmarks/results-2026-11-22/eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from senland_geo import hw
from senland_geo.evaluate import (
    Recipe,
    SceneData,
    clearest_scene,
    column_split,
    default_precision,
    load_cube_split,
    load_slovenia,
    summary,
    train_in_memory,
    training_side,
    tune_forest,
)
from senland_geo.evaluate_folds import column_folds, crossval_forest, crossval_network

SHARED = Path(os.environ.get("SENLAND_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
UNETS = ("unet-resnet34", "unet-gn")
GOAL = 0.05

#: Brandenburg: 64 px crops of a 768 x 790 px training block (768 x 1008 px on refit).
BRANDENBURG = Recipe(epochs=50, steps_per_epoch=16, batch_size=16, patch_size=64, patience=15)
#: Slovenia: crops of a 101 x 48 px training block (101 x 64 px on refit), per network as
#: chosen on validation mIoU (eval-dev-runs.md): unet-resnet34 (BatchNorm, 24M parameters)
#: needs larger crops and batches; unet-gn does best with small ones. AgrUNet uses gn's.
SLOVENIA = {
    "unet-resnet34": Recipe(epochs=40, steps_per_epoch=8, batch_size=16, patch_size=48,
                            lr=1e-3, patience=40),
    "unet-gn": Recipe(epochs=40, steps_per_epoch=8, batch_size=8, patch_size=32, patience=40),
}  # fmt: skip
#: AgrUNet on the five-date series (small filters for a 1 km tile).
AGRUNET_OPTIONS = {"filters": [16, 32], "hidden": 32}


def _forest_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"seed": args.seed, "n_jobs": args.rf_jobs, "max_pixels": args.rf_pixels,
               "refit": not args.no_refit}  # fmt: skip
    if args.quick:  # one small forest
        options.update(grid=[(20, 12, 1)], class_weights=[None], max_pixels=5_000)
    return options


def _seeds(value: str) -> dict[str, int]:
    """``--seeds``: ``N`` for every network, or ``model=N,...`` (others 1)."""
    if "=" not in value:
        return {"*": int(value)}
    pairs = [item.split("=") for item in value.split(",")]
    return {"*": 1, **{model: int(n) for model, n in pairs}}


def _seeds_for(args: argparse.Namespace, model: str) -> int:
    return args.seeds.get(model, args.seeds["*"])


def _trial(args: argparse.Namespace, holdout: str, model: str, recipe: Recipe) -> Any:
    """The last ``--trials`` line (``tune_real_data.py``) of exactly this recipe, or None."""
    if not args.trials:
        return None
    want = json.loads(json.dumps(asdict(recipe)))
    found = None
    for line in Path(args.trials).read_text().splitlines():
        t = json.loads(line)
        if (t["holdout"], t["model"], t.get("recipe")) == (holdout, model, want):
            found = t
    return found


def _run_network(
    args: argparse.Namespace, holdout: str, model: str, data: SceneData, recipe: Recipe,
    **kwargs: Any,
) -> dict[str, Any]:  # fmt: skip
    """Train and score one network; with a matching validation trial only refit it.

    The trial's early-stopped best epochs (deterministic training finds them again) and
    its validation score are taken over, which skips the early-stopping phase.
    """
    trial = _trial(args, holdout, model, recipe) if not kwargs.get("extra_images") else None
    if trial is None:
        return _network(train_in_memory(model, data, recipe, **kwargs))
    m = train_in_memory(model, data, recipe, best_epochs=trial["best_epochs"], **kwargs)
    m["validation"] = {"miou": trial["val_miou"], "macro_dice": trial["val_macro_dice"]}
    m["epochs_run"] = trial["epochs_run"]
    return {**_network(m), "validation_from": f"{args.trials} line at {trial['time']} UTC"}


def _loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _network(m: dict[str, Any]) -> dict[str, Any]:
    keep = ("validation", "test_before_refit", "best_epoch", "best_epochs", "seeds",
            "epochs_run", "seconds", "images_per_second", "parameters")  # fmt: skip
    return {**summary(m), **{k: m[k] for k in keep if k in m}, "loadavg_after": _loadavg()}


def _forest(m: dict[str, Any]) -> dict[str, Any]:
    keep = ("chosen", "validation", "test_before_refit", "train_pixels", "seconds", "trials")
    return {**summary(m), **{k: m[k] for k in keep if k in m}, "loadavg_after": _loadavg()}


def _unets(args: argparse.Namespace) -> list[str]:
    """The U-Nets selected with ``--models``."""
    return [m for m in UNETS if m in args.models]


def _judge(result: dict[str, Any], forests: tuple[str, ...]) -> None:
    """Margins of each U-Net over the best forest, and ``goal_met``."""
    best = max(forests, key=lambda f: result[f]["miou"])
    rf = result[best]["miou"]
    result["best_forest"] = best
    unets = [m for m in UNETS if m in result]
    result["unet_minus_forest_miou"] = {m: round(result[m]["miou"] - rf, 4) for m in unets}
    result["goal_met"] = bool(min(result["unet_minus_forest_miou"].values(), default=-1) >= GOAL)
    if len(unets) < len(UNETS):
        result["goal_met"] = f"not judged: only {unets} run"
    for name in (*unets, *forests, *(k for k in result if k.startswith("agrunet_"))):
        result[name]["miou_trained_classes"] = _trained_miou(result, name)


def brandenburg(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """U-Nets vs forest on the Brandenburg holdout."""
    from senland_geo.build import build_region_cube
    from senland_geo.regions import get_region

    cube = Path(args.cube) if args.cube else work / "brandenburg.zarr"
    if not cube.exists():
        build_region_cube(get_region("brandenburg"), cube)
    data = load_cube_split(cube)
    recipe = replace(BRANDENBURG, seed=args.seed, precision=args.precision,
                     refit=not args.no_refit)  # fmt: skip
    if args.epochs:
        recipe = replace(recipe, epochs=args.epochs)
    recipes = {m: replace(recipe, seeds=_seeds_for(args, m)) for m in UNETS}
    out: dict[str, Any] = {
        "cube": str(cube),
        "columns": {k: [v.start, v.stop] for k, v in data.columns.items()},
        "label_pixels": _label_pixels(data),
        "class_pixels": _class_pixels(data),
        "recipes": {m: asdict(r) for m, r in recipes.items()},
    }
    for model in _unets(args):
        out[model] = _run_network(args, "brandenburg", model, data, recipes[model])
    rf = tune_forest(data, **_forest_options(args))
    out["random_forest"] = _forest(rf)
    _judge(out, ("random_forest",))
    return out


def _label_pixels(data: SceneData) -> dict[str, int]:
    return {p: int((data.labels[:, s] >= 0).sum()) for p, s in data.columns.items()}


def _class_pixels(data: SceneData) -> dict[str, dict[str, int]]:
    """Pixels of each class per split (``train_side``: the refit's training side)."""
    parts = {**data.columns, "train_side": training_side(data.columns)}
    out = {}
    for part, cols in parts.items():
        y = data.labels[:, cols]
        counts = np.bincount(y[y >= 0].ravel(), minlength=len(data.classes))
        pairs = zip(data.classes.classes, counts, strict=True)
        out[part] = {f"{c.code} {c.name}": int(n) for c, n in pairs if n}
    return out


def _trained_miou(result: dict[str, Any], model: str, side: str = "train_side") -> float:
    """Mean IoU over the scored classes that have training pixels."""
    trained = result["class_pixels"][side]
    ious = [v for c, v in result[model]["per_class_iou"].items() if c in trained]
    return round(float(np.mean(ious)), 4) if ious else float("nan")


def slovenia(args: argparse.Namespace) -> dict[str, Any]:
    """U-Nets (single scene) and AgrUNet (series) vs forest on the Slovenia tile."""
    sl = load_slovenia(SHARED / "slovenia-eolearn")
    cols = column_split(sl.labels.shape[1])
    scene = clearest_scene(sl.scenes, sl.bands)
    single = SceneData(sl.scenes[scene], sl.labels, cols, sl.bands)
    others = [sl.scenes[i] for i in range(len(sl.scenes)) if i != scene]
    others = others if args.slo_all_dates else []
    common = {"seed": args.seed, "precision": args.precision, "refit": not args.no_refit}
    if args.slo_epochs:
        common["epochs"] = args.slo_epochs
    recipes = {m: replace(r, **common, seeds=_seeds_for(args, m)) for m, r in SLOVENIA.items()}
    out: dict[str, Any] = {
        "scene_used_for_single_scene_models": scene,
        "columns": {k: [v.start, v.stop] for k, v in cols.items()},
        "label_pixels": _label_pixels(single),
        "class_pixels": _class_pixels(single),
        "recipes": {m: asdict(r) for m, r in recipes.items()},
    }
    for model in _unets(args):
        out[model] = _run_network(args, "slovenia", model, single, recipes[model],
                                  extra_images=others)  # fmt: skip
    out["random_forest"] = _forest(
        tune_forest(single, train_images=[single.image, *others], **_forest_options(args))
    )
    series = SceneData(sl.scenes, sl.labels, cols, sl.bands)
    out["random_forest_5_date_stack"] = _forest(tune_forest(series, **_forest_options(args)))
    agr = replace(recipes["unet-gn"], model_options=AGRUNET_OPTIONS,
                  seeds=_seeds_for(args, "agrunet"))  # fmt: skip
    if "agrunet" in args.models:
        out["agrunet_5_dates"] = _network(train_in_memory("agrunet", series, agr))
    _judge(out, ("random_forest", "random_forest_5_date_stack"))
    if args.kfold:
        out["kfold"] = _slovenia_kfold(args, out, single, series, others, recipes, agr)
    if "agrunet_5_dates" in out and _unets(args):
        best_single = max(out[m]["miou"] for m in _unets(args))
        out["agrunet_minus_best_single_scene_unet_miou"] = round(
            out["agrunet_5_dates"]["miou"] - best_single, 4
        )
    return out


def _slovenia_kfold(
    args: argparse.Namespace,
    holdout: dict[str, Any],
    single: SceneData,
    series: SceneData,
    others: list[np.ndarray],
    recipes: dict[str, Recipe],
    agr: Recipe,
) -> dict[str, Any]:
    """Blocked k-fold over column strips with the holdout's chosen settings."""
    folds = column_folds(single.labels.shape[1], args.kfold)
    test_columns = [[f["test"].start, f["test"].stop] for f in folds]
    out: dict[str, Any] = {"k": args.kfold, "buffer_px": 3, "test_columns": test_columns}
    t0 = time.perf_counter()

    def epochs(name: str) -> list[int]:
        return [e + 1 for e in holdout[name]["best_epochs"]]

    for model in _unets(args):
        out[model] = crossval_network(
            model, single, recipes[model], folds, epochs=epochs(model), extra_images=others
        )
    forest = {"seed": args.seed, "n_jobs": args.rf_jobs, "max_pixels": args.rf_pixels}
    out["random_forest"] = crossval_forest(
        single, holdout["random_forest"]["chosen"], folds, train_images=[single.image, *others],
        **forest,
    )  # fmt: skip
    out["random_forest_5_date_stack"] = crossval_forest(
        series, holdout["random_forest_5_date_stack"]["chosen"], folds, **forest
    )
    if "agrunet" in args.models and not args.kfold_skip_agrunet:
        out["agrunet_5_dates"] = crossval_network(
            "agrunet", series, agr, folds, epochs=epochs("agrunet_5_dates")
        )
    best = max(("random_forest", "random_forest_5_date_stack"), key=lambda f: out[f]["miou_mean"])
    out["best_forest"] = best
    out["unet_minus_forest_miou_mean"] = {
        m: round(out[m]["miou_mean"] - out[best]["miou_mean"], 4) for m in _unets(args)
    }
    out["goal_met"] = bool(min(out["unet_minus_forest_miou_mean"].values(), default=-1) >= GOAL)
    if len(_unets(args)) < len(UNETS):
        out["goal_met"] = f"not judged: only {_unets(args)} run"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["loadavg_after"] = _loadavg()
    return out


def _kfold_table(result: dict[str, Any]) -> str:
    """Per-fold and mean +- std mIoU of the k-fold protocol as text."""
    rows = [k for k in result if isinstance(result[k], dict) and "miou_mean" in result[k]]
    lines = [f"-- blocked {result['k']}-fold over column strips (test columns per fold)"]
    lines.append(f"{'fold':28s}" + "".join(f"{r[:22]:>24s}" for r in rows))
    for i, cols in enumerate(result["test_columns"]):
        cells = "".join(f"{result[r]['folds'][i]['miou']:>24}" for r in rows)
        lines.append(f"{f'{i} cols {cols[0]}:{cols[1]}':28s}" + cells)
    cells = [f"{result[r]['miou_mean']:.4f} +- {result[r]['miou_std']:.4f}" for r in rows]
    mean = "".join(f"{c:>24}" for c in cells)
    lines.append(f"{'mIoU mean +- std':28s}" + mean)
    lines.append(
        f"margin over {result['best_forest']}: {result['unet_minus_forest_miou_mean']}  "
        f"goal_met={result['goal_met']}"
    )
    return "\n".join(lines)


def _table(name: str, result: dict[str, Any]) -> str:
    """Per-class IoU, mIoU and margins of one holdout as text."""
    rows = [k for k in result if isinstance(result[k], dict) and "per_class_iou" in result[k]]
    classes = sorted({c for r in rows for c in result[r]["per_class_iou"]})
    lines = [f"== {name}  (goal: U-Nets >= best forest + {GOAL} mIoU)"]
    lines.append(f"{'class':28s}" + "".join(f"{r[:22]:>24s}" for r in rows))
    for c in classes:
        cells = [result[r]["per_class_iou"].get(c) for r in rows]
        lines.append(f"{c[:28]:28s}" + "".join(f"{'-' if v is None else v:>24}" for v in cells))
    lines.append(f"{'mIoU':28s}" + "".join(f"{result[r]['miou']:>24}" for r in rows))
    trained = "".join(f"{result[r].get('miou_trained_classes', '-'):>24}" for r in rows)
    lines.append(f"{'mIoU (trained classes)':28s}" + trained)
    lines.append(
        f"margin over {result['best_forest']}: {result['unet_minus_forest_miou']}  "
        f"goal_met={result['goal_met']}"
    )
    if "kfold" in result:
        lines.append(_kfold_table(result["kfold"]))
    return "\n".join(lines)


def main() -> None:
    """Run both evaluations; print tables and JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=None, help="Brandenburg epochs (override)")
    p.add_argument("--slo-epochs", type=int, default=None, help="Slovenia epochs (override)")
    p.add_argument("--slo-all-dates", action="store_true", help="Slovenia: 5 dates as crops")
    p.add_argument("--no-refit", action="store_true", help="score the early-stopped models")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, one forest")
    p.add_argument("--kfold", type=int, default=5, help="Slovenia k-fold (0: skip)")
    p.add_argument("--models", type=lambda v: v.split(","), default=[*UNETS, "agrunet"],
                   help="networks to run, comma-separated (default: all three)")  # fmt: skip
    p.add_argument("--kfold-skip-agrunet", action="store_true", help="no AgrUNet k-fold")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=_seeds, default=_seeds("1"),
                   help="seed-ensemble size: N, or model=N,... (others 1)")  # fmt: skip
    p.add_argument("--trials", default=None,
                   help="tune_real_data.py log: a network whose exact recipe has a validation "
                   "trial there takes its best epochs and only refits")  # fmt: skip
    p.add_argument("--precision", default=default_precision(), choices=["fp32", "bf16"],
                   help="default: bf16 where the CPU runs it natively, else fp32")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--rf-pixels", type=int, default=60_000, help="forest training draw")
    p.add_argument("--rf-jobs", type=int, default=2, help="forest fitting threads")
    p.add_argument("--cube", default=None, help="Existing Brandenburg cube (else built)")
    p.add_argument("--work", default=None, help="Folder for the cube (default: a temp dir)")
    p.add_argument("--out", default=None, help="Also write the JSON here")
    p.add_argument("--only", choices=["brandenburg", "slovenia"], default=None)
    args = p.parse_args()
    if args.trials and not Path(args.trials).is_file():
        p.error(f"--trials {args.trials} is not a file; give a tune_real_data.py log or omit it")
    if args.quick:
        args.epochs, args.slo_epochs = args.epochs or 2, args.slo_epochs or 2
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="senland-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "hardware": hw.describe(),
        "settings": vars(args),
        "loadavg_start": _loadavg(),
    }
    if args.only in (None, "slovenia"):
        result["slovenia"] = slovenia(args)
    if args.only in (None, "brandenburg"):
        result["brandenburg"] = brandenburg(args, work)
    result["loadavg_end"] = _loadavg()
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(
        result, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    for name in ("slovenia", "brandenburg"):
        if name in result:
            print(_table(name, result[name]))


if __name__ == "__main__":
    main()
