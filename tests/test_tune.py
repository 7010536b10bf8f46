import json

from senland_geo.train import TrainConfig
from senland_geo.tune import tune


def test_tune_writes_table_and_best_config(brandenburg_cube, tmp_path):
    base = TrainConfig(
        model="unet-gn",
        model_options={"groups": 4},
        epochs=2,
        patches_per_epoch=8,
        patch_size=32,
        eval_tile=256,
        threads=1,
    )
    result = tune(brandenburg_cube, tmp_path, base, trials=3, batch_sizes=[4, 8], seed=1)
    rows = result["trials"]
    assert len(rows) == 3 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert rows[0]["state"] == "complete"
    best = json.loads((tmp_path / "best_config.json").read_text())
    done = [r for r in rows if r["state"] == "complete"]
    assert result["best"]["val_macro_dice"] == max(r["val_macro_dice"] for r in done)
    assert best["lr"] == result["best"]["params"]["lr"] and 2e-4 <= best["lr"] <= 2e-2
    assert best["model_options"]["depth"] in (2, 3, 4) and best["batch_size"] in (4, 8)
    assert TrainConfig(**best).model == "unet-gn"
    table = (tmp_path / "trials.md").read_text()
    assert table.startswith("| trial | state | val_macro_dice") and table.count("\n") == 5
    assert (tmp_path / "trials.csv").read_text().count("\n") == 4
