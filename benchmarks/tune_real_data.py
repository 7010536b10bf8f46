r"""Validation-only recipe trials for ``eval_real_data.py`` (the test block is never scored).

Each call trains one network recipe (or a forest grid) on a holdout's training block and
scores only its validation block (:func:`senland_geo.evaluate.validate_in_memory`), and
appends one JSON line to ``--log``. Recipes for the final evaluation are chosen from these
lines; the test block is predicted once, by ``eval_real_data.py``.

    python benchmarks/tune_real_data.py --holdout brandenburg --cube c.zarr \
        --model unet-gn --set lr=1e-3 --set seeds=3 --log trials.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from senland_geo.evaluate import (
    Recipe,
    SceneData,
    clearest_scene,
    column_split,
    load_cube_split,
    load_slovenia,
    summary,
    validate_in_memory,
)

SHARED = Path(os.environ.get("SENLAND_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))


def _base_recipe(holdout: str, model: str) -> Recipe:
    from eval_real_data import BRANDENBURG, SLOVENIA  # type: ignore[import-not-found]

    return BRANDENBURG if holdout == "brandenburg" else SLOVENIA[model]


def _data(args: argparse.Namespace) -> SceneData:
    if args.holdout == "brandenburg":
        return load_cube_split(args.cube)
    sl = load_slovenia(SHARED / "slovenia-eolearn")
    scene = clearest_scene(sl.scenes, sl.bands)
    return SceneData(sl.scenes[scene], sl.labels, column_split(sl.labels.shape[1]), sl.bands)


def _parse_set(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs typed by the :class:`Recipe` field they name."""
    types = {f.name: f.type for f in fields(Recipe)}
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"--set {item}: {key!r} is not a Recipe field ({sorted(types)})")
        kind = str(types[key])
        out[key] = (
            int(value) if kind == "int" else float(value) if kind == "float"
            else value.lower() in ("1", "true", "yes") if kind == "bool" else value
        )  # fmt: skip
    return out


def main() -> None:
    """Run one validation trial and append it to the log."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--holdout", choices=["brandenburg", "slovenia"], required=True)
    p.add_argument("--cube", default=None, help="Brandenburg cube")
    p.add_argument("--model", required=True, help="network plugin, or 'forest'")
    p.add_argument("--set", action="append", default=[], help="Recipe field=value")
    p.add_argument("--forest-grid", default=None, help="forest: JSON list of [n, depth, leaf]")
    p.add_argument("--rf-pixels", type=int, default=60_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = _data(args)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    if args.model == "forest":
        from senland_geo.evaluate import FOREST_GRID, tune_forest

        grid = [tuple(g) for g in json.loads(args.forest_grid)] if args.forest_grid else FOREST_GRID
        # A copy whose "test" columns are the validation columns: nothing reads the test.
        val_only = replace(data, columns={**data.columns, "test": data.columns["val"]})
        m = tune_forest(val_only, grid=grid, max_pixels=args.rf_pixels, n_jobs=2, refit=False)
        line = {"trials": m["trials"], "chosen": m["chosen"], "val_miou": m["validation"]["miou"]}
    else:
        recipe = replace(_base_recipe(args.holdout, args.model), **_parse_set(args.set))
        m = validate_in_memory(args.model, data, recipe)
        line = {
            "recipe": asdict(recipe),
            "val_miou": round(m["miou"], 4),
            "val_macro_dice": round(m["macro_dice"], 4),
            "val_miou_first_seed": round(m["first_seed_miou"], 4),
            "val_per_class_iou": summary(m)["per_class_iou"],
            "best_epochs": m["best_epochs"],
            "epochs_run": m["epochs_run"],
            "images_per_second": m["images_per_second"],
        }
    line = {
        "holdout": args.holdout, "model": args.model, "set": args.set, **line,
        "seconds": round(time.perf_counter() - t0, 1),
        "loadavg": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        "time": time.strftime("%H:%M:%S", time.gmtime()),
    }  # fmt: skip
    with open(args.log, "a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line))


if __name__ == "__main__":
    main()
