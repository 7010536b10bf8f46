import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from senland_geo.backends.cpu import native_bf16
from senland_geo.checkpoint import load_checkpoint
from senland_geo.splits import Split
from senland_geo.train import (
    BoxSampler,
    Engine,
    NonFiniteLossError,
    ShardedBatchSampler,
    TrainConfig,
    blocked_folds,
    train,
    validation_split,
)

TINY = dict(
    model="unet-resnet34-slim",
    patches_per_epoch=8,
    batch_size=4,
    patch_size=32,
    eval_tile=256,
    threads=1,
    plots=False,
)


def test_validation_block_sits_between_train_and_test_with_buffers():
    outer, inner = validation_split((0, 0, 15360, 7680), 10, val_fraction=0.2, buffer_px=16)
    (train_box,), (val_box,), (test_box,) = inner.train, inner.test, outer.test
    assert train_box[2] + 160 == val_box[0] and val_box[2] + 160 == test_box[0]
    assert test_box[2] == 15360 and train_box[0] == 0


def test_blocked_folds_are_disjoint_with_buffers():
    folds = blocked_folds((0, 0, 3000, 1000), 10, 3, buffer_px=5)
    assert [f.test[0][:3:2] for f in folds] == [(0, 1000), (1000, 2000), (2000, 3000)]
    middle = folds[1]
    assert middle.train == ((0, 0, 950, 1000), (2050, 0, 3000, 1000))
    vals = [f.test[0] for f in folds]  # validation strips tile the training side
    assert sum(b[2] - b[0] for b in vals) == 3000


def test_box_sampler_stays_inside_its_boxes():
    class DS:
        bounds = (slice(0, 1), slice(0, 1), slice(0, 1))

    boxes = [(0, 0, 400, 1000), (600, 0, 1000, 1000)]
    s = BoxSampler(DS(), 32, 200, boxes, 10, torch.Generator().manual_seed(0))
    qs = list(s)
    assert len(qs) == 200
    for x, y, _ in qs:
        assert x.stop - x.start == 320 and x.start % 10 == 0
        assert any(
            b[0] <= x.start and x.stop <= b[2] and b[1] <= y.start and y.stop <= b[3] for b in boxes
        )
    assert {x.start < 400 for x, _, _ in qs} == {True, False}
    again = list(BoxSampler(DS(), 32, 200, boxes, 10, torch.Generator().manual_seed(0)))
    assert again == qs
    shards = [list(ShardedBatchSampler(qs[:8], 4, r, 2)) for r in (0, 1)]
    assert shards[0] == [[qs[0], qs[2]], [qs[4], qs[6]]] and shards[1][0] == [qs[1], qs[3]]


class _NaNAt(nn.Module):
    """A 1x1 conv that returns NaN logits from a given call on."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.calls, self.at = 0, at

    def forward(self, x):
        self.calls += 1
        out = self.conv(x)
        return out * float("nan") if self.calls > self.at else out


def _data(epoch):
    g = torch.Generator().manual_seed(epoch)
    for _ in range(3):
        yield torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 4, (2, 8, 8), generator=g)


def _val():
    return {"macro_dice": 0.5, "miou": 0.4, "overall_accuracy": 0.6}


def test_nan_guard_names_step_and_precision():
    model = _NaNAt(at=4)
    config = TrainConfig(epochs=3, precision="bf16", lr=1e-2)
    engine = Engine(
        model,
        config,
        steps_per_epoch=3,
        autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    )
    with pytest.raises(
        NonFiniteLossError, match=r"loss became nan at step 4 \(epoch 1\) with precision bf16"
    ):
        engine.fit(_data, _val)
    assert engine.state["step"] == 4 and engine.state["epoch"] == 0


def test_early_stopping_restores_the_best_weights():
    scores = iter([0.3, 0.6, 0.5, 0.55, 0.59, 0.9])
    snapshots = []
    model = nn.Conv2d(3, 4, 1)

    def validate():
        snapshots.append(model.weight.detach().clone())
        return {"macro_dice": next(scores), "miou": 0.0, "overall_accuracy": 0.0}

    engine = Engine(model, TrainConfig(epochs=6, patience=3, lr=1e-2), steps_per_epoch=3)
    state = engine.fit(_data, validate)
    assert state["epoch"] == 4 and state["stopped_early"] and state["best_epoch"] == 1
    assert [round(h["val_macro_dice"], 2) for h in state["history"]] == [0.3, 0.6, 0.5, 0.55, 0.59]
    assert torch.equal(model.weight, snapshots[1])


KILLED_RUN = textwrap.dedent(
    """
    import json, os, signal, sys
    from senland_geo.train import TrainConfig, train
    config = TrainConfig(**json.loads(sys.argv[3]))
    def die(record):
        if record["epoch"] == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)
    train(sys.argv[1], sys.argv[2], config, progress=False, on_epoch_end=die)
    """
)


def test_killed_run_resumes_to_the_same_result(brandenburg_cube, tmp_path):
    options = {**TINY, "epochs": 3, "patience": 10}
    config = TrainConfig(**options)
    ref = train(brandenburg_cube, tmp_path / "ref", config, progress=False)
    run = tmp_path / "killed"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_RUN,
            str(brandenburg_cube),
            str(run),
            json.dumps(options),
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (run / "state.pt").is_file() and not (run / "checkpoint.pt").exists()
    resumed = train(brandenburg_cube, run, config, progress=False)
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history == json.loads((tmp_path / "ref" / "history.json").read_text())
    a, _ = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")
    b, _ = load_checkpoint(run / "checkpoint.pt")
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)
    assert resumed["confusion"] == ref["confusion"] and resumed["miou"] == ref["miou"]
    # the validation block lies between train and test, apart from both
    split = Split.load(run / "split.json")
    val = json.loads((run / "validation.json").read_text())["validation"][0]
    assert split.train[0][2] < val[0] < val[2] < split.test[0][0]
    assert ref["validation"]["pixels"] > 10_000 and ref["pixels"] > 100_000


# bf16 where the CPU runs it natively; elsewhere torch's reference bf16 conv makes the two
# holdout predictions of this test take ~13 min instead of seconds (fp32 is tested then).
KFOLD_PRECISION = "bf16" if native_bf16() else "fp32"


def test_kfold_reports_mean_and_std(brandenburg_cube, tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 1, "folds": 2, "precision": KFOLD_PRECISION})
    metrics = train(brandenburg_cube, tmp_path, config, progress=False)
    cv = metrics["cross_validation"]
    folds = [json.loads((tmp_path / f"fold-{i}" / "metrics.json").read_text()) for i in (1, 2)]
    mious = [f["miou"] for f in folds]
    assert cv["folds"] == 2 and cv["test"]["miou"]["n"] == 2
    assert cv["test"]["miou"]["mean"] == pytest.approx(sum(mious) / 2)
    assert cv["test"]["miou"]["std"] == pytest.approx(abs(mious[0] - mious[1]) / 2**0.5)
    assert folds[0]["split"] != folds[1]["split"]
    assert folds[0]["hardware"]["precision"] == KFOLD_PRECISION
    assert (tmp_path / "checkpoint.pt").is_file()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["cross_validation"]["best_fold"] in (1, 2)
