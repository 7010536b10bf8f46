"""The Flax unet-gn matches the torch one: weights, logits, loss, one AdamW step."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = jax.numpy

from senland_geo.models.unet_gn import build_unet_gn  # noqa: E402

from senland_geo_jax.backend import JaxBackend  # noqa: E402
from senland_geo_jax.model import UNetGN, count_params, init_params, torch_to_flax  # noqa: E402
from senland_geo_jax.train import (  # noqa: E402
    IGNORE_INDEX,
    ce_dice_loss,
    create_train_state,
    make_optimizer,
    make_train_step,
)

jax.config.update("jax_default_matmul_precision", "highest")

SMALL = {"base_channels": 8, "depth": 4, "groups": 4}
OPT = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}


def torch_ce_dice(logits, labels, dice_weight=1.0, smooth=1.0, ignore_index=IGNORE_INDEX):
    """Reference torch implementation of the backend's CE + Dice loss (NCHW logits)."""
    ce = torch.nn.functional.cross_entropy(logits, labels, ignore_index=ignore_index)
    valid = (labels != ignore_index).float()
    safe = torch.where(labels != ignore_index, labels, torch.zeros_like(labels))
    probs = logits.softmax(1) * valid[:, None]
    onehot = torch.nn.functional.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).float()
    onehot = onehot * valid[:, None]
    inter = (probs * onehot).sum((0, 2, 3))
    card = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + smooth) / (card + smooth)
    return ce + dice_weight * (1 - dice.mean())


def batch(b=2, c=10, s=32, k=11, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, c, s, s)).astype(np.float32)
    y = rng.integers(0, k, (b, s, s)).astype(np.int64)
    y[:, :4, :4] = IGNORE_INDEX  # some unlabelled pixels
    return x, y


def nhwc(x):
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def test_param_tree_matches_torch_default_model():
    torch.manual_seed(0)
    tmodel = build_unet_gn()
    params = torch_to_flax(tmodel.state_dict())
    fresh = jax.eval_shape(lambda: init_params(UNetGN(), 10))
    n_torch = sum(p.numel() for p in tmodel.parameters())
    assert count_params(params) == count_params(fresh) == n_torch
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(fresh)
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(fresh), strict=True
    ):
        assert a.shape == b.shape


def test_logits_match_default_model():
    torch.manual_seed(0)
    tmodel = build_unet_gn().eval()
    x, _ = batch()
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    params = torch_to_flax(tmodel.state_dict())
    got = np.asarray(UNetGN().apply({"params": params}, nhwc(x))).transpose(0, 3, 1, 2)
    assert got.shape == expected.shape == (2, 11, 32, 32)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_loss_matches_torch():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 11, 8, 8)).astype(np.float32) * 3
    _, y = batch(s=8)
    expected = torch_ce_dice(torch.from_numpy(logits), torch.from_numpy(y)).item()
    got = float(ce_dice_loss(nhwc(logits), jnp.asarray(y, jnp.int32)))
    assert got == pytest.approx(expected, abs=1e-5)


def test_one_adamw_step_matches_torch():
    torch.manual_seed(0)
    tmodel = build_unet_gn(**SMALL)
    params = torch_to_flax(tmodel.state_dict())
    x, y = batch()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    topt = torch.optim.AdamW(tmodel.parameters(), **OPT)
    losses_t = []
    for _ in range(2):
        topt.zero_grad()
        loss = torch_ce_dice(tmodel(xt), yt)
        loss.backward()
        topt.step()
        losses_t.append(loss.item())
    with torch.no_grad():
        logits_t = tmodel(xt).numpy()

    model = UNetGN(num_classes=11, **SMALL)
    opt = make_optimizer(**OPT)
    step = make_train_step(model.apply, opt)
    state = create_train_state(params, opt)
    xj, yj = nhwc(x), jnp.asarray(y, jnp.int32)
    losses_j = []
    for _ in range(2):
        state, loss = step(state, xj, yj)
        losses_j.append(float(loss))
    logits_j = np.asarray(model.apply({"params": state.params}, xj)).transpose(0, 3, 1, 2)

    # losses_*[1] is the loss after one AdamW step on the same batch
    np.testing.assert_allclose(losses_j, losses_t, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits_j, logits_t, atol=1e-3, rtol=0)
    # Adam's first steps move each weight by ~lr * g / |g|, so a weight whose gradient is
    # at rounding-noise level can move differently in the two frameworks: allow a few
    # outliers up to 0.1 * (2 steps * lr), the rest must agree to 2e-5.
    new_params = torch_to_flax(tmodel.state_dict())
    for a, b in zip(
        jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(new_params), strict=True
    ):
        diff = np.abs(np.asarray(a) - np.asarray(b))
        assert diff.max() < 0.2 * OPT["lr"]
        assert np.mean(diff > 2e-5) < 1e-3


def test_backend_from_torch_weights_predicts_like_torch():
    torch.manual_seed(0)
    tmodel = build_unet_gn(**SMALL).eval()
    backend = JaxBackend().build("unet-gn", torch_state_dict=tmodel.state_dict(), **SMALL)
    x, y = batch()
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(backend.predict(x), expected, atol=1e-4, rtol=0)
    loss = backend.train_step(x, y)
    with torch.no_grad():
        expected_loss = torch_ce_dice(torch.from_numpy(expected), torch.from_numpy(y)).item()
    assert loss == pytest.approx(expected_loss, abs=1e-4)


def test_bf16_policy_keeps_fp32_params_and_logits_close_to_fp32() -> None:
    params = init_params(UNetGN(**SMALL), 10, seed=0)
    x, _ = batch(b=2, s=32)
    ref = UNetGN(**SMALL).apply({"params": params}, nhwc(x))
    low = UNetGN(**SMALL, dtype=jnp.bfloat16).apply({"params": params}, nhwc(x))
    assert low.dtype == jnp.float32 and low.shape == ref.shape == (2, 32, 32, 11)
    err = float(jnp.max(jnp.abs(low - ref)) / jnp.max(jnp.abs(ref)))
    assert 0.0 < err < 0.05  # bf16 operands really used, fp32 accumulation keeps it close
    tree = jax.eval_shape(lambda: init_params(UNetGN(**SMALL, dtype=jnp.bfloat16), 10))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(tree)} == {jnp.dtype("float32")}
