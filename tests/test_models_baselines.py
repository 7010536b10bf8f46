"""Baselines: 3D U-Net, U-TAE, ResNet-18 classifier."""

import pytest
import torch
import torch.nn.functional as F

from senland_geo import registry
from senland_geo.models.agrunet import count_parameters
from senland_geo.models.baselines import (
    UTAE,
    ResNet18Classifier,
    UNet3D,
    build_resnet18_classifier,
    build_unet3d,
    build_utae,
)

SMALL_UTAE = {
    "encoder_widths": (8, 8, 16),
    "decoder_widths": (8, 8, 16),
    "out_conv": 8,
    "n_head": 4,
    "d_model": 16,
}
SMALL_UNET3D = {"feats": 2}
TEMPORAL = pytest.mark.parametrize(
    ("builder", "opts"),
    [(build_unet3d, SMALL_UNET3D), (build_utae, SMALL_UTAE)],
    ids=["unet3d", "utae"],
)


def test_published_parameter_counts():
    # seed table (OrthoPASTIS, 10 bands, 20 classes): UNet-3D 1.55 M, U-TAE 1.09 M
    assert abs(count_parameters(build_unet3d(10, 20)) / 1.55e6 - 1) < 0.01
    assert abs(count_parameters(build_utae(10, 20)) / 1.09e6 - 1) < 0.01


@TEMPORAL
@pytest.mark.parametrize("t", [1, 3, 8])
@pytest.mark.parametrize("hw", [(32, 32), (24, 40), (30, 34)])
def test_temporal_shapes(builder, opts, t, hw):
    torch.manual_seed(0)
    model = builder(4, 5, **opts).eval()
    with torch.no_grad():
        out = model(torch.randn(2, t, 4, *hw))
    assert out.shape == (2, 5, *hw)
    assert torch.isfinite(out).all()
    assert model.temporal is True


@TEMPORAL
def test_all_valid_mask_changes_nothing(builder, opts):
    torch.manual_seed(0)
    model = builder(4, 5, **opts).eval()
    x = torch.randn(2, 4, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, date_mask=torch.ones(2, 4, dtype=torch.bool)), model(x), rtol=0, atol=0
        )


def test_utae_padded_dates_do_not_affect_output():
    torch.manual_seed(0)
    model = build_utae(4, 5, **SMALL_UTAE).eval()
    x = torch.randn(2, 5, 4, 32, 32)
    xp = torch.cat([x, 100 * torch.randn(2, 3, 4, 32, 32)], dim=1)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :5] = True
    with torch.no_grad():
        torch.testing.assert_close(model(xp, date_mask=mask), model(x), rtol=1e-5, atol=1e-5)


@TEMPORAL
def test_gradients_and_few_steps_lower_the_loss(builder, opts):
    torch.manual_seed(0)
    model = builder(3, 2, **opts).train()
    b, t, hw = 4, 4, 16
    y = torch.randint(0, 2, (b, hw, hw))
    x = torch.randn(b, t, 3, hw, hw) * 0.3
    x[:, :, 0] += (y.float() * 2 - 1)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(6):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if step == 0:
            for name, p in model.named_parameters():
                assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_resnet18_classifier():
    torch.manual_seed(0)
    model = build_resnet18_classifier()
    assert isinstance(model, ResNet18Classifier)
    assert model.task == "classification"
    assert model.temporal is False
    assert model.conv1.in_channels == 13
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 13, 32, 32)).shape == (2, 10)
    model = build_resnet18_classifier(4, 3).train()
    x, y = torch.randn(4, 4, 16, 16), torch.tensor([0, 1, 2, 0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    with pytest.raises(TypeError, match="no options"):
        build_resnet18_classifier(pretrained=True)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("unet3d", UNet3D), ("utae", UTAE), ("resnet18-classifier", ResNet18Classifier)],
)
def test_registry_loads_builders(name, cls):
    builder = registry.load("models", name)
    opts = {"unet3d": SMALL_UNET3D, "utae": SMALL_UTAE}.get(name, {})
    assert isinstance(builder(4, 3, **opts), cls)


def test_utae_rejects_inconsistent_widths():
    with pytest.raises(ValueError, match="same length"):
        build_utae(encoder_widths=(8, 16), decoder_widths=(8, 8, 16))
    with pytest.raises(ValueError, match="must equal"):
        build_utae(encoder_widths=(8, 16), decoder_widths=(8, 32))
