"""Loss, AdamW train step, fused multi-step training and inference for the Flax U-Net.

All functions work on NHWC ``float32`` images and ``int32`` labels ``(B, H, W)`` where
``IGNORE_INDEX`` (-100, as in ``senland_geo.classes``) marks unlabelled pixels.

Speed notes for XLA:CPU (measured on a 2-core AMD EPYC, see the package README):

* the train step is ``jax.jit``-ed with the train state donated, so parameters and
  AdamW moments are updated in place;
* a *rolled* ``lax.scan`` / ``lax.fori_loop`` over convolutional train steps runs about
  20x slower than the same steps called one by one (JAX issue #12868: convolutions
  inside a while loop lose XLA:CPU's fast paths), so :func:`make_fused_train_steps`
  unrolls the loop completely (``unroll=True``); compile time grows with the number
  of fused steps, so keep it small (2-8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

IGNORE_INDEX = -100


class TrainState(NamedTuple):
    """Everything a train step updates: a pytree, donated to each step.

    Attributes:
        params: Flax ``params`` collection.
        opt_state: optax AdamW state.
        step: Number of steps taken (int32 scalar).
    """

    params: Any
    opt_state: Any
    step: jax.Array


def ce_dice_loss(
    logits: jax.Array,
    labels: jax.Array,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> jax.Array:
    """Cross-entropy plus soft multi-class Dice loss, ignoring ``ignore_index`` pixels.

    ``ce`` is the mean negative log-likelihood over labelled pixels. Dice is computed
    per class over the whole batch, ``(2 * sum(p * t) + smooth) / (sum(p) + sum(t) +
    smooth)`` with softmax probabilities ``p`` and one-hot targets ``t`` restricted to
    labelled pixels, and ``dice_loss = 1 - mean_k dice_k``.

    Args:
        logits: ``(B, H, W, K)`` logits.
        labels: ``(B, H, W)`` integer class indices or ``ignore_index``.
        dice_weight: Weight of the Dice term.
        smooth: Additive smoothing of the Dice ratio.
        ignore_index: Label value excluded from both terms.

    Returns:
        Scalar ``ce + dice_weight * dice_loss``.
    """
    num_classes = logits.shape[-1]
    valid = labels != ignore_index
    safe = jnp.where(valid, labels, 0)
    validf = valid.astype(logits.dtype)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    ce = jnp.sum(nll * validf) / jnp.maximum(jnp.sum(validf), 1.0)
    probs = jnp.exp(logp) * validf[..., None]
    onehot = jax.nn.one_hot(safe, num_classes, dtype=logits.dtype) * validf[..., None]
    inter = jnp.sum(probs * onehot, axis=(0, 1, 2))
    card = jnp.sum(probs, axis=(0, 1, 2)) + jnp.sum(onehot, axis=(0, 1, 2))
    dice = (2.0 * inter + smooth) / (card + smooth)
    return ce + dice_weight * (1.0 - jnp.mean(dice))


def make_optimizer(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> optax.GradientTransformation:
    """AdamW with ``torch.optim.AdamW``'s update rule and defaults.

    Args:
        lr: Learning rate.
        betas: ``(b1, b2)`` moment decay rates.
        eps: Added to the root of the second moment.
        weight_decay: Decoupled weight decay (applied to every parameter, as torch does
            when given ``model.parameters()``).

    Returns:
        An optax gradient transformation.
    """
    return optax.adamw(lr, b1=betas[0], b2=betas[1], eps=eps, weight_decay=weight_decay)


def create_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    """Wrap parameters and a fresh optimizer state.

    Args:
        params: Flax ``params`` collection.
        optimizer: From :func:`make_optimizer`.

    Returns:
        A :class:`TrainState` at step 0.
    """
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def _step_fn(
    apply_fn: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    loss_kwargs: dict[str, Any],
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array]]:
    def loss_of(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return ce_dice_loss(apply_fn({"params": params}, x), y, **loss_kwargs)

    def step(state: TrainState, x: jax.Array, y: jax.Array) -> tuple[TrainState, jax.Array]:
        loss, grads = jax.value_and_grad(loss_of)(state.params, x, y)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), loss

    return step


def make_train_step(
    apply_fn: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    **loss_kwargs: Any,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array]]:
    """Build a jitted train step ``(state, x, y) -> (state, loss)``.

    The state argument is donated: do not reuse the ``state`` passed in.

    Args:
        apply_fn: The Flax module's ``apply``.
        optimizer: From :func:`make_optimizer`.
        **loss_kwargs: Passed to :func:`ce_dice_loss`.

    Returns:
        The jitted step; ``x`` is ``(B, H, W, C)`` float32, ``y`` ``(B, H, W)`` int32.
    """
    return jax.jit(_step_fn(apply_fn, optimizer, loss_kwargs), donate_argnums=0)


def make_fused_train_steps(
    apply_fn: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    unroll: bool | int = True,
    **loss_kwargs: Any,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array]]:
    """Build a jitted function running one train step per leading slice of its batches.

    ``fused(state, xs, ys)`` with ``xs`` ``(k, B, H, W, C)`` and ``ys`` ``(k, B, H, W)``
    equals ``k`` calls of :func:`make_train_step` and returns the ``k`` losses. It is a
    ``lax.scan`` unrolled by default: rolled, XLA:CPU runs it ~20x slower.

    Args:
        apply_fn: The Flax module's ``apply``.
        optimizer: From :func:`make_optimizer`.
        unroll: ``lax.scan``'s ``unroll`` (``True``: fully unrolled; ``1``: rolled).
        **loss_kwargs: Passed to :func:`ce_dice_loss`.

    Returns:
        The jitted fused function; the state is donated.
    """
    step = _step_fn(apply_fn, optimizer, loss_kwargs)

    def fused(state: TrainState, xs: jax.Array, ys: jax.Array) -> tuple[TrainState, jax.Array]:
        def body(carry: TrainState, batch: tuple[jax.Array, jax.Array]) -> tuple[Any, Any]:
            return step(carry, *batch)

        return jax.lax.scan(body, state, (xs, ys), unroll=unroll)

    return jax.jit(fused, donate_argnums=0)


def make_predict(apply_fn: Callable[..., jax.Array]) -> Callable[[Any, jax.Array], jax.Array]:
    """Build a jitted inference function ``(params, x) -> logits`` (NHWC).

    Args:
        apply_fn: The Flax module's ``apply``.

    Returns:
        The jitted function.
    """

    def predict(params: Any, x: jax.Array) -> jax.Array:
        return apply_fn({"params": params}, x)

    return jax.jit(predict)
