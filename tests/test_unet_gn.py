"""Tests of the torch GroupNorm U-Net (model plugin ``unet-gn``)."""

from __future__ import annotations

import pytest
import torch

from senland_geo.models.unet_gn import UNetGN, build_unet_gn


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_parameter_count():
    model = build_unet_gn()
    assert 7.7e6 <= n_params(model) <= 7.9e6
    assert n_params(model) == 7_765_387
    assert (model.in_channels, model.num_classes) == (10, 11)
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules()) == 18


def test_output_shape_default_model():
    model = build_unet_gn().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 10, 32, 32))
    assert out.shape == (2, 11, 32, 32)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("options", "shape"),
    [
        ({"base_channels": 8, "groups": 4}, (1, 4, 16, 16)),
        ({"depth": 2, "base_channels": 8}, (3, 4, 8, 12)),
    ],
)
def test_options_and_non_square_input(options, shape):
    model = build_unet_gn(in_channels=shape[1], num_classes=5, **options)
    out = model(torch.randn(*shape))
    assert out.shape == (shape[0], 5, *shape[2:])


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_unet_gn(base_channels=8, groups=4)
    x = torch.randn(2, 10, 32, 32)
    y = torch.randint(0, 11, (2, 32, 32))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = build_unet_gn(base_channels=8, groups=4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(2, 10, 16, 16)
    y = torch.randint(0, 11, (2, 16, 16))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_input_and_options_are_explained():
    model = build_unet_gn(base_channels=8, groups=4)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 10, 20, 20))
    with pytest.raises(ValueError, match=r"\(B, 10, H, W\)"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="unknown option"):
        build_unet_gn(width=3)
    with pytest.raises(ValueError, match="groups=8 must divide"):
        UNetGN(base_channels=12)


def test_module_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, senland_geo.models.unet_gn; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
