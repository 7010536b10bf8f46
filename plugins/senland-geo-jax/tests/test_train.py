"""Fused multi-step training equals single steps; backend API behaviour."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from senland_geo_jax.backend import JaxBackend  # noqa: E402
from senland_geo_jax.model import UNetGN, init_params  # noqa: E402
from senland_geo_jax.train import (  # noqa: E402
    create_train_state,
    make_fused_train_steps,
    make_optimizer,
    make_train_step,
)

jax.config.update("jax_default_matmul_precision", "highest")

SMALL = {"base_channels": 8, "depth": 2, "groups": 4}


def batches(k=2, b=2, s=16, c=10, n=11, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((k, b, s, s, c)).astype(np.float32)
    ys = rng.integers(0, n, (k, b, s, s)).astype(np.int32)
    return jnp.asarray(xs), jnp.asarray(ys)


def test_fused_k_steps_equal_k_single_steps():
    model = UNetGN(**SMALL)
    opt = make_optimizer(lr=1e-2)
    params = init_params(model, 10, seed=3)
    xs, ys = batches()

    step = make_train_step(model.apply, opt)
    state = create_train_state(jax.tree_util.tree_map(jnp.copy, params), opt)
    single = []
    for i in range(xs.shape[0]):
        state, loss = step(state, xs[i], ys[i])
        single.append(float(loss))

    fused = make_fused_train_steps(model.apply, opt, unroll=True)
    fstate, flosses = fused(create_train_state(params, opt), xs, ys)

    np.testing.assert_allclose(np.asarray(flosses), single, rtol=1e-5, atol=1e-6)
    assert int(fstate.step) == int(state.step) == 2
    for a, b in zip(
        jax.tree_util.tree_leaves(fstate.params),
        jax.tree_util.tree_leaves(state.params),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert np.isfinite(single).all()


def test_backend_train_predict_numpy_roundtrip():
    backend = JaxBackend(seed=1).build("unet-gn", lr=1e-2, **SMALL)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 10, 16, 16)).astype(np.float32)
    y = rng.integers(0, 11, (2, 16, 16))
    first = backend.train_step(x, y)
    for _ in range(4):
        last = backend.train_step(x, y)
    assert np.isfinite(first) and last < first
    losses = backend.train_steps(np.stack([x, x]), np.stack([y, y]))
    assert losses.shape == (2,) and np.isfinite(losses).all()
    logits = backend.predict(x)
    assert logits.shape == (2, 11, 16, 16) and logits.dtype == np.float32
    assert int(backend.state.step) == 7


def test_backend_rejects_unknown_model_and_option():
    with pytest.raises(ValueError, match="unet-gn"):
        JaxBackend().build("unet-resnet34")
    with pytest.raises(ValueError, match="widht"):
        JaxBackend().build("unet-gn", widht=3)
    with pytest.raises(RuntimeError, match="build"):
        JaxBackend().predict(np.zeros((1, 10, 16, 16), np.float32))
