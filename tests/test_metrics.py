import json
import math

import numpy as np
import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from senland_geo.classes import IGNORE_INDEX, WORLDCOVER
from senland_geo.metrics import ConfusionMatrix, format_summary, summarize_runs, write_metrics


def test_confusion_matrix_by_hand():
    truth = torch.tensor([0, 0, 1, 1, 2, IGNORE_INDEX])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = ConfusionMatrix(3)
    cm.update(pred, truth)
    m = cm.compute()
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["pixels"] == 5 and math.isclose(m["overall_accuracy"], 3 / 5)
    ious = [c["iou"] for c in m["per_class"]]
    assert np.allclose(ious, [1 / 3, 2 / 3, 0.0])
    dices = [c["dice"] for c in m["per_class"]]
    assert np.allclose(dices, [2 / 4, 4 / 5, 0.0])
    assert math.isclose(m["miou"], 1 / 3) and math.isclose(m["macro_dice"], (0.5 + 0.8) / 3)


def test_matches_torchmetrics_with_ignore_index():
    g = torch.Generator().manual_seed(0)
    k = 6
    truth = torch.randint(0, k, (4, 32, 32), generator=g)
    truth[:, :4] = IGNORE_INDEX
    pred = torch.where(torch.rand(4, 32, 32, generator=g) < 0.6, truth.clamp(max=k - 1), 0)
    pred = torch.where(truth == IGNORE_INDEX, torch.randint(0, k, pred.shape, generator=g), pred)
    cm = ConfusionMatrix(k)
    for i in range(4):  # accumulated over batches
        cm.update(pred[i], truth[i])
    ours = cm.compute()
    iou = MulticlassJaccardIndex(k, average="none", ignore_index=IGNORE_INDEX)(pred, truth)
    f1 = MulticlassF1Score(k, average="none", ignore_index=IGNORE_INDEX)(pred, truth)
    oa = MulticlassAccuracy(k, average="micro", ignore_index=IGNORE_INDEX)(pred, truth)
    np.testing.assert_allclose([c["iou"] for c in ours["per_class"]], iou.numpy(), rtol=1e-6)
    np.testing.assert_allclose([c["dice"] for c in ours["per_class"]], f1.numpy(), rtol=1e-6)
    assert math.isclose(ours["overall_accuracy"], float(oa), rel_tol=1e-6)
    assert math.isclose(ours["miou"], float(iou.mean()), rel_tol=1e-6)


def test_valid_mask_excludes_pixels():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([1, 1]), torch.tensor([0, 1]), torch.tensor([False, True]))
    assert cm.matrix.tolist() == [[0, 0], [0, 1]]


def test_summary_mean_std_and_json(tmp_path):
    runs = []
    for correct in (8, 6):
        cm = ConfusionMatrix(len(WORLDCOVER))
        truth = torch.zeros(10, dtype=torch.long)
        pred = torch.tensor([0] * correct + [1] * (10 - correct))
        cm.update(pred, truth)
        runs.append(cm.compute(WORLDCOVER))
    s = summarize_runs(runs)
    assert math.isclose(s["summary"]["overall_accuracy"]["mean"], 0.7)
    assert math.isclose(s["summary"]["overall_accuracy"]["std"], np.std([0.8, 0.6], ddof=1))
    tree = s["summary"]["per_class"][0]
    assert tree["name"] == WORLDCOVER.names[0] and math.isclose(tree["iou"], 0.7)
    assert s["mean_metrics"]["pixels"] == 20
    metrics = {**s["mean_metrics"], "x": float("nan")}
    metrics["cross_validation"] = {"folds": 2, "test": s["summary"]}
    write_metrics(tmp_path / "m.json", metrics)
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["x"] is None and data["per_class"][1]["iou"] == 0.0
    assert "0.700 ± 0.141" in format_summary(metrics)
