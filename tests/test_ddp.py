"""Two gloo processes on CPU train to the same weights as one process on the global batch."""

import pytest
import torch

from senland_geo import ddp
from senland_geo.models.unet_gn import build_unet_gn
from senland_geo.train import Engine, SegmentationLoss, TrainConfig

CONFIG = TrainConfig(model="unet-gn", epochs=2, lr=5e-3, seed=3, patience=10)
STEPS, BATCH = 3, 8


def _model():
    torch.manual_seed(CONFIG.seed)
    return build_unet_gn(3, 4, base_channels=8, depth=1, groups=4)


def _global_batches(epoch):
    g = torch.Generator().manual_seed(100 + epoch)
    for _ in range(STEPS):
        yield (
            torch.randn(BATCH, 3, 16, 16, generator=g),
            torch.randint(0, 4, (BATCH, 16, 16), generator=g),
        )


def _fit(model, net=None, rank=0, world=1):
    engine = Engine(
        model,
        CONFIG,
        steps_per_epoch=STEPS,
        net=net,
        rank=rank,
        world_size=world,
        loss_fn=SegmentationLoss(dice_weight=0.0),
    )

    def batches(epoch):
        for x, y in _global_batches(epoch):
            yield x[rank::world], y[rank::world]  # this rank's share of the global batch

    def validate():
        return {"macro_dice": 0.0, "miou": 0.0, "overall_accuracy": 0.0}

    engine.fit(batches, validate)
    return engine


def _rank(rank, world, out):
    model = _model()
    engine = _fit(model, ddp.wrap_model(model, torch.device("cpu")), rank, world)
    torch.save(
        {"weights": model.state_dict(), "images": engine.images_seen}, f"{out}/rank{rank}.pt"
    )


def test_two_process_ddp_matches_one_process(tmp_path):
    single = _model()
    _fit(single)
    ddp.launch(_rank, 2, str(tmp_path), backend="gloo", threads_per_process=1)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["images"] == 2 * STEPS * BATCH
    moved = 0.0
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0["weights"][k], v, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(r1["weights"][k], r0["weights"][k], rtol=0, atol=0)
        moved = max(moved, float((v - _model().state_dict()[k]).abs().max()))
    assert moved > 1e-3  # the weights really trained


def test_backend_choice():
    assert ddp.process_group_backend("cpu") == "gloo"
    if torch.cuda.is_available() and torch.distributed.is_nccl_available():
        assert ddp.process_group_backend("cuda") == "nccl"
    else:
        pytest.skip("no CUDA here: NCCL choice not exercised")
