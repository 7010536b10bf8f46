"""AgrUNet: shapes, published parameter counts, deep supervision, date mask, training."""

import pytest
import torch
import torch.nn.functional as F

from senland_geo import registry
from senland_geo.models.agrunet import (
    AgrUNet,
    build_agrunet,
    build_agrunet_munich,
    build_agrunet_pastis,
    count_parameters,
)

SMALL = {"filters": (8, 16), "hidden": 8}
SMALL_LTAE = {
    "filters": (8, 16),
    "hidden": 16,
    "temporal_encoder": "ltae",
    "ltae_heads": 4,
    "ltae_d_model": 16,
}
ENCODERS = pytest.mark.parametrize("opts", [SMALL, SMALL_LTAE], ids=["convlstm", "ltae"])


def small(in_channels=4, num_classes=5, **opts):
    torch.manual_seed(0)
    return build_agrunet(in_channels, num_classes, **{**SMALL, **opts})


@ENCODERS
@pytest.mark.parametrize("t", [1, 3, 8])
@pytest.mark.parametrize("hw", [(32, 32), (24, 40), (33, 19)])
def test_eval_shapes(opts, t, hw):
    torch.manual_seed(0)
    model = build_agrunet(4, 5, **opts).eval()
    with torch.no_grad():
        out = model(torch.randn(2, t, 4, *hw))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 5, *hw)
    assert torch.isfinite(out).all()
    assert model.temporal is True


def test_same_model_accepts_any_t():
    model = small().eval()
    with torch.no_grad():
        shapes = {model(torch.randn(1, t, 4, 16, 16)).shape for t in (2, 5, 7)}
    assert shapes == {(1, 5, 16, 16)}


def test_depth_option_and_three_levels():
    model = build_agrunet(4, 3, depth=3, hidden=8)
    assert model.filters == (64, 128, 256)
    model = small(filters=(4, 8, 16)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 24, 24)).shape == (1, 5, 24, 24)
    with pytest.raises(ValueError, match="depth=2"):
        build_agrunet(filters=(8, 16, 32), depth=2)


@pytest.mark.parametrize(
    ("builder", "in_channels", "num_classes", "filters", "published"),
    [
        (build_agrunet_pastis, 10, 20, (64, 128), 2.02e6),
        (build_agrunet_munich, 7, 18, (64, 128, 256), 6.28e6),
    ],
)
def test_named_configs_match_published_parameter_counts(
    builder, in_channels, num_classes, filters, published
):
    model = builder()
    assert (model.in_channels, model.num_classes, model.filters) == (
        in_channels,
        num_classes,
        filters,
    )
    n = count_parameters(model)
    assert abs(n / published - 1) < 0.05, n
    assert abs(n / published - 1) < 0.01, n  # what the module docstring claims


def test_pastis_config_runs_small_input():
    model = build_agrunet_pastis().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, 10, 16, 16))
    assert out.shape == (1, 20, 16, 16)


@pytest.mark.parametrize("name", ["agrunet", "agrunet-pastis", "agrunet-munich"])
def test_registry_loads_builders(name):
    builder = registry.load("models", name)
    model = builder(filters=(4, 8), hidden=4)
    assert isinstance(model, AgrUNet)
    assert model.temporal is True
    assert registry.load("models", "agrunet-pastis") is build_agrunet_pastis


@ENCODERS
def test_deep_supervision_list_in_train_tensor_in_eval(opts):
    model = build_agrunet(4, 5, **opts)
    x = torch.randn(2, 3, 4, 32, 32)
    outs = model.train()(x)
    assert isinstance(outs, list)
    assert len(outs) == len(opts["filters"]) + 1  # main, decoder level 1, bottleneck
    assert all(o.shape == (2, 5, 32, 32) for o in outs)
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    plain = build_agrunet(4, 5, deep_supervision=False, **opts).train()
    assert isinstance(plain(x), torch.Tensor)
    assert count_parameters(plain) < count_parameters(model)


@ENCODERS
def test_all_valid_mask_changes_nothing(opts):
    torch.manual_seed(0)
    model = build_agrunet(4, 5, **opts).eval()
    x = torch.randn(2, 5, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = model(x, date_mask=torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def padded(x, extra, scale=100.0):
    """Append ``extra`` garbage dates and return (x_padded, date_mask)."""
    b, t = x.shape[:2]
    garbage = scale * torch.randn(b, extra, *x.shape[2:])
    mask = torch.zeros(b, t + extra, dtype=torch.bool)
    mask[:, :t] = True
    return torch.cat([x, garbage], dim=1), mask


@ENCODERS
def test_padded_dates_do_not_affect_output(opts):
    torch.manual_seed(0)
    model = build_agrunet(4, 5, **opts).eval()
    x = torch.randn(2, 5, 4, 32, 32)
    xp, mask = padded(x, 3)
    with torch.no_grad():
        ref = model(x)
        out = model(xp, date_mask=mask)
        unmasked = model(xp)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert (unmasked - ref).abs().max() > 1e-2  # the garbage would matter without the mask


def test_padded_dates_ragged_batch_and_train_mode_batchnorm():
    """Samples with different numbers of real dates; BN statistics ignore padding."""
    torch.manual_seed(0)
    model = small()
    a, b = torch.randn(1, 4, 4, 16, 16), torch.randn(1, 6, 4, 16, 16)
    xa, _ = padded(a, 2)
    batch = torch.cat([xa, b])
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    model.eval()
    with torch.no_grad():
        out = model(batch, date_mask=mask)
        torch.testing.assert_close(out[:1], model(a), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[1:], model(b), rtol=1e-5, atol=1e-5)
    # train mode: statistics over the valid dates equal statistics over the same data
    # without padding (a single sample, so the batch is the same set of values)
    model.train()
    xp, m = padded(a, 3)
    with torch.no_grad():
        ref = model(a)[0]
        out = model(xp, date_mask=m)[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_date_mask_validation():
    model = small().eval()
    x = torch.randn(2, 3, 4, 16, 16)
    with pytest.raises(ValueError, match="boolean"):
        model(x, date_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        model(x, date_mask=torch.ones(2, 4, dtype=torch.bool))
    bad = torch.ones(2, 3, dtype=torch.bool)
    bad[1] = False
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        model(x, date_mask=bad)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        model(torch.randn(2, 4, 16, 16))


def test_positions_are_used_by_ltae():
    torch.manual_seed(0)
    model = build_agrunet(4, 5, **SMALL_LTAE).eval()
    x = torch.randn(1, 4, 4, 16, 16)
    with torch.no_grad():
        a = model(x)
        b = model(x, positions=torch.tensor([[0, 10, 40, 200]]))
    assert not torch.allclose(a, b)


@ENCODERS
def test_gradients_reach_every_parameter(opts):
    torch.manual_seed(0)
    model = build_agrunet(4, 5, **opts).train()
    x, mask = padded(torch.randn(2, 4, 4, 16, 16), 2)
    y = torch.randint(0, 5, (2, 16, 16))
    outs = model(x, date_mask=mask)
    sum(F.cross_entropy(o, y) for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is None


@ENCODERS
def test_few_steps_lower_the_loss(opts):
    """Tiny synthetic task: the class is whether band 0 rises or falls over time."""
    torch.manual_seed(0)
    model = build_agrunet(2, 2, **opts).train()
    b, t, hw = 4, 4, 16
    trend = torch.randint(0, 2, (b, 1, hw, hw)).float() * 2 - 1  # +1 rising, -1 falling
    ramp = torch.linspace(-1, 1, t).view(1, t, 1, 1)
    x = torch.randn(b, t, 2, hw, hw) * 0.3
    x[:, :, 0] += trend * ramp
    y = (trend[:, 0] > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        outs = model(x)
        loss = F.cross_entropy(outs[0], y) + 0.5 * sum(F.cross_entropy(o, y) for o in outs[1:])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_bad_options_raise():
    with pytest.raises(ValueError, match="temporal_encoder"):
        build_agrunet(temporal_encoder="gru")
    with pytest.raises(ValueError, match="conv"):
        build_agrunet(conv="4d")
    with pytest.raises(ValueError, match="filters"):
        build_agrunet(filters=())


def test_full_3d_conv_option():
    model = small(conv="3d").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 16, 16)).shape == (1, 5, 16, 16)
    assert count_parameters(model) > count_parameters(small())
