"""Hyper-parameter search with Optuna: learning rate, depth/filters, batch size.

Each trial is a :func:`senland_geo.train.train` run in ``trial-<n>/`` that reports its
validation macro Dice after every epoch; a :class:`optuna.pruners.MedianPruner` stops
trials that fall below the median of earlier trials at the same epoch. The objective is
the best *validation* Dice (the test holdout is never used to choose). Results:
``trials.csv`` / ``trials.md`` (a table) and ``best_config.json`` (a full
:class:`~senland_geo.train.TrainConfig`, usable with ``senland-geo train --config``).

Optuna is imported only here (it is an optional dependency).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from senland_geo.errors import UserError
from senland_geo.train import TrainConfig, copy_config, train

#: Model options searched per model family: name -> (option, choices).
ARCHITECTURE_SPACE: dict[str, dict[str, list[Any]]] = {
    "unet-gn": {"depth": [2, 3, 4], "base_channels": [8, 16, 32]},
    "unet-resnet34": {"encoder_depth": [3, 4, 5]},
    "unet-resnet34-slim": {"width": [0.25, 0.375, 0.5]},
    "agrunet": {"filters": [[16, 32], [32, 64], [64, 128], [32, 64, 128]]},
}


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError(
            "senland-geo tune needs optuna: pip install 'senland-geo[tune]' (or pip install optuna)"
        ) from None
    return optuna


def suggest_config(trial: Any, base: TrainConfig, batch_sizes: list[int]) -> TrainConfig:
    """Draw a :class:`TrainConfig` for one trial (lr, architecture size, batch size)."""
    lr = trial.suggest_float("lr", base.lr / 10, base.lr * 10, log=True)
    batch = trial.suggest_categorical("batch_size", batch_sizes)
    options = dict(base.model_options)
    for name, choices in ARCHITECTURE_SPACE.get(base.model, {}).items():
        labels = [json.dumps(c) for c in choices]
        options[name] = json.loads(trial.suggest_categorical(name, labels))
    if base.model == "unet-resnet34" and "encoder_depth" in options:
        depth = options["encoder_depth"]
        options["decoder_channels"] = [256, 128, 64, 32, 16][:depth]
    return copy_config(base, lr=lr, batch_size=batch, model_options=options, plots=False)


def tune(
    cube_path: str | Path,
    out_dir: str | Path,
    base: TrainConfig | None = None,
    *,
    trials: int = 20,
    batch_sizes: list[int] | None = None,
    seed: int = 0,
    warmup_epochs: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Search hyper-parameters on a cube's validation block.

    Args:
        cube_path: Cube with labels.
        out_dir: Folder for trial runs and the results.
        base: Fixed settings (model, epochs, patches...); searched fields are replaced.
        trials: Number of trials.
        batch_sizes: Batch sizes to try (default 4, 8, 16).
        seed: Seed of the TPE sampler (the search is reproducible).
        warmup_epochs: Epochs before a trial may be pruned.
        progress: Show per-trial progress bars.

    Returns:
        ``best`` (value, params, config) and ``trials`` (one row per trial).
    """
    optuna = _import_optuna()
    base = base or TrainConfig()
    batch_sizes = batch_sizes or [4, 8, 16]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=warmup_epochs),
    )

    def objective(trial: Any) -> float:
        config = suggest_config(trial, base, batch_sizes)
        trial.set_user_attr("config", asdict(config))

        def report(record: dict[str, Any]) -> None:
            trial.report(record["val_macro_dice"], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

        metrics = train(
            cube_path, out / f"trial-{trial.number}", config, progress=progress,
            on_epoch_end=report,
        )  # fmt: skip
        trial.set_user_attr("test_miou", metrics["miou"])
        return float(metrics["validation"]["macro_dice"])

    study.optimize(objective, n_trials=trials, catch=(UserError,))
    rows = []
    for t in study.trials:
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "val_macro_dice": t.value,
                "epochs": len(t.intermediate_values),
                **{k: v for k, v in t.params.items()},
            }
        )
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise UserError(f"no trial completed in {out}; see the trial folders for errors")
    best = study.best_trial
    best_config = best.user_attrs["config"]
    (out / "best_config.json").write_text(json.dumps(best_config, indent=1))
    _write_table(rows, out)
    result = {
        "best": {"trial": best.number, "val_macro_dice": best.value, "params": best.params,
                 "config": best_config},
        "trials": rows,
    }  # fmt: skip
    (out / "tune.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _write_table(rows: list[dict[str, Any]], out: Path) -> None:
    import csv

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    (out / "trials.md").write_text(format_table(rows))


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of trials."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
