import pickle

import pytest
import torch

from senland_geo.checkpoint import (
    check_compatible,
    load_checkpoint,
    load_training_state,
    read_meta,
    save_checkpoint,
    save_training_state,
)
from senland_geo.classes import TABLES, WORLDCOVER
from senland_geo.errors import UserError
from senland_geo.models.unet_gn import build_unet_gn


def _meta(model="unet-gn", classes=WORLDCOVER):
    return {
        "model": model,
        "model_options": {"base_channels": 8, "depth": 1},
        "bands": ["B02", "B03", "B04"],
        "classes": classes.to_dict(),
    }


def test_roundtrip_weights_only_and_refusals(tmp_path):
    torch.manual_seed(0)
    model = build_unet_gn(3, len(WORLDCOVER), base_channels=8, depth=1)
    path = save_checkpoint(tmp_path / "c.pt", model, _meta())
    raw = torch.load(path, weights_only=True)  # plain tensors and data only
    assert raw["format"].startswith("senland-geo-checkpoint")
    loaded, meta = load_checkpoint(path, model="unet-gn", classes=WORLDCOVER, bands=meta_bands())
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert read_meta(path)["bands"] == ["B02", "B03", "B04"]
    with pytest.raises(UserError, match="model 'unet-gn', not 'unet-resnet34'"):
        load_checkpoint(path, model="unet-resnet34")
    other = next(t for name, t in TABLES.items() if name != WORLDCOVER.name)
    with pytest.raises(UserError, match="incompatible with"):
        load_checkpoint(path, classes=other)
    with pytest.raises(UserError, match="expects bands"):
        check_compatible(meta, bands=["B02", "B03"])


def meta_bands():
    return ["B02", "B03", "B04"]


def test_weights_that_do_not_fit_the_class_table_are_refused(tmp_path):
    model = build_unet_gn(3, 4, base_channels=8, depth=1)  # 4 classes, table says 11
    path = save_checkpoint(tmp_path / "c.pt", model, _meta())
    with pytest.raises(UserError, match="does not fit model 'unet-gn'"):
        load_checkpoint(path)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "senland-geo-checkpoint/1", "x": Evil()}, f)
    with pytest.raises(UserError, match="can't be read safely"):
        read_meta(path)
    with pytest.raises(UserError, match="can't be read safely"):
        load_training_state(path)


def test_training_state_roundtrip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=5)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "loop": {"epoch": 3, "history": [{"loss": 1.0}]},
    }
    save_training_state(tmp_path / "s.pt", state)
    back = load_training_state(tmp_path / "s.pt")
    assert back["loop"]["epoch"] == 3
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    with pytest.raises(UserError, match="not a senland-geo training state"):
        torch.save({"format": "x"}, tmp_path / "x.pt")
        load_training_state(tmp_path / "x.pt")
