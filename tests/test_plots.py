import numpy as np
import torch
from PIL import Image

from senland_geo import hw, plots
from senland_geo.classes import WORLDCOVER
from senland_geo.metrics import ConfusionMatrix


def _metrics():
    cm = ConfusionMatrix(len(WORLDCOVER))
    truth = torch.tensor([0, 0, 0, 1, 1, 4, 4, 4])
    cm.update(torch.tensor([0, 0, 1, 1, 1, 4, 4, 0]), truth)
    return cm.compute(WORLDCOVER)


def _stamp(path):
    return Image.open(path).info["Description"]


def test_every_figure_names_the_engine_read_from_the_machine(tmp_path):
    machine = hw.describe()
    history = [
        {"epoch": e, "loss": 2 - e / 3, "val_macro_dice": 0.2 + e / 10, "val_miou": 0.1 + e / 10}
        for e in range(4)
    ]
    paths = [
        plots.learning_curves(history, tmp_path / "lc.png"),
        plots.per_class_iou(_metrics(), tmp_path / "iou.png"),
        plots.confusion_matrix(_metrics(), tmp_path / "cm.png"),
        plots.side_by_side(
            np.random.default_rng(0).random((10, 16, 16)),
            np.tile(np.arange(4), (16, 4)),
            np.zeros((16, 16), dtype=int),
            WORLDCOVER.colors if hasattr(WORLDCOVER, "colors") else [f"C{i}" for i in range(11)],
            tmp_path / "sbs.png",
            names=WORLDCOVER.names,
        ),
    ]
    for p in paths:
        assert p.stat().st_size > 5_000
        assert _stamp(p) == f"engine: {machine['engine']}"
        assert machine["cpu_model"] in _stamp(p) or machine["device"] != "cpu"
    assert Image.open(paths[3]).size[0] > 2 * Image.open(paths[3]).size[1]  # three panels


def test_recorded_hardware_is_used_when_given(tmp_path):
    hardware = {"engine": "GPU NVIDIA GeForce GTX 1650", "precision": "fp16", "processes": 2}
    p = plots.per_class_iou(_metrics(), tmp_path / "iou.png", hardware=hardware)
    assert _stamp(p) == "engine: GPU NVIDIA GeForce GTX 1650, fp16, 2 processes"
