"""Flax (``flax.linen``) twin of ``senland_geo.models.unet_gn``: same layers, same weights.

Layout is NHWC. Module and parameter names follow the torch ``state_dict`` so that
:func:`torch_to_flax` is a mechanical rename plus kernel transposes:

========================================  ===========================================
torch key                                 flax path
========================================  ===========================================
``down.{i}.conv1.weight`` (O, I, 3, 3)    ``down_{i}/conv1/kernel`` (3, 3, I, O)
``down.{i}.norm1.weight`` / ``.bias``     ``down_{i}/norm1/scale`` / ``bias``
``up.{j}.up.weight`` (I, O, 2, 2)         ``up_{j}/up/kernel`` (2, 2, I, O)
``up.{j}.up.bias``                        ``up_{j}/up/bias``
``up.{j}.conv.conv1.weight`` ...          ``up_{j}/conv/conv1/kernel`` ...
``head.weight`` (K, C, 1, 1) / ``.bias``  ``head/kernel`` (1, 1, C, K) / ``head/bias``
========================================  ===========================================

The layers are written with plain ``jax.lax`` / ``jnp`` operations chosen for XLA:CPU
speed: the 2x2 max-pool is a reshape + max (no ``reduce_window`` / ``select_and_scatter``
in the backward pass) and the stride-2 transposed convolution is one matmul plus a
depth-to-space reshape (exact, since its 2x2 windows do not overlap).

Mixed precision (``dtype=jnp.bfloat16`` on :class:`UNetGN`) follows torch's CPU autocast:
parameters stay ``float32``; convolutions and matmuls take ``bfloat16`` operands and
accumulate in ``float32`` (``preferred_element_type``); GroupNorm statistics and the
logits are ``float32``. The default ``float32`` runs exactly the fp32 graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

GN_EPS = 1e-5

# PyTorch's default init is kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_torch_like_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _bias_init(fan_in: int) -> nn.initializers.Initializer:
    bound = 1.0 / np.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv(nn.Module):
    """Square convolution, stride 1, 'same' zero padding, NHWC.

    Attributes:
        features: Output channels.
        kernel_size: Side of the square kernel (odd).
        use_bias: Whether to add a bias.
        dtype: Operand dtype of the convolution (accumulation is ``float32``).
        out_dtype: Dtype of the result (default: ``dtype``).
    """

    features: int
    kernel_size: int = 3
    use_bias: bool = False
    dtype: Any = jnp.float32
    out_dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Convolve ``x`` of shape ``(B, H, W, C)`` to ``(B, H, W, features)``."""
        k = self.kernel_size
        cin = x.shape[-1]
        kernel = self.param("kernel", _torch_like_init, (k, k, cin, self.features), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        if k == 1:
            y = jnp.einsum("bhwc,co->bhwo", x, kernel[0, 0], preferred_element_type=jnp.float32)
        else:
            pad = k // 2
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(1, 1),
                padding=((pad, pad), (pad, pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                preferred_element_type=jnp.float32,
            )
        if self.use_bias:
            y = y + self.param("bias", _bias_init(cin * k * k), (self.features,), jnp.float32)
        return y.astype(self.out_dtype or self.dtype)


class GroupNorm(nn.Module):
    """GroupNorm over ``(H, W, C/groups)`` like ``torch.nn.GroupNorm`` (biased variance).

    Attributes:
        groups: Number of channel groups.
        epsilon: Added to the variance.
        dtype: Dtype of the output (statistics are computed in ``float32``).
    """

    groups: int
    epsilon: float = GN_EPS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalize ``x`` of shape ``(B, H, W, C)``."""
        b, h, w, c = x.shape
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        g = x.astype(jnp.float32).reshape(b, h, w, self.groups, c // self.groups)
        mean = g.mean(axis=(1, 2, 4), keepdims=True)
        centered = g - mean
        var = jnp.mean(jnp.square(centered), axis=(1, 2, 4), keepdims=True)
        g = centered * jax.lax.rsqrt(var + self.epsilon)
        return (g.reshape(b, h, w, c) * scale + bias).astype(self.dtype)


class DoubleConv(nn.Module):
    """Two ``Conv3x3(no bias) -> GroupNorm -> ReLU`` layers.

    Attributes:
        features: Output channels.
        groups: GroupNorm groups.
        dtype: Compute dtype (see the module docstring).
    """

    features: int
    groups: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the block to ``(B, H, W, C)`` features."""
        dt = self.dtype
        x = Conv(self.features, dtype=dt, name="conv1")(x)
        x = nn.relu(GroupNorm(self.groups, dtype=dt, name="norm1")(x))
        x = Conv(self.features, dtype=dt, name="conv2")(x)
        return nn.relu(GroupNorm(self.groups, dtype=dt, name="norm2")(x))


class UpConv(nn.Module):
    """``ConvTranspose2d(kernel_size=2, stride=2)`` as one matmul plus depth-to-space.

    ``out[b, 2i+p, 2j+q, o] = sum_c x[b, i, j, c] * kernel[p, q, c, o] + bias[o]``.

    Attributes:
        features: Output channels.
        dtype: Operand and output dtype (accumulation is ``float32``).
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Upsample ``(B, H, W, C)`` to ``(B, 2H, 2W, features)``."""
        b, h, w, c = x.shape
        o = self.features
        # torch's ConvTranspose2d weight is (C_in, C_out, kH, kW): fan_in is C_out*kH*kW.
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=3, out_axis=2),
            (2, 2, c, o),
            jnp.float32,
        )
        bias = self.param("bias", _bias_init(o * 4), (o,), jnp.float32)
        y = jnp.einsum(
            "bhwc,pqco->bhpwqo",
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            preferred_element_type=jnp.float32,
        )
        return (y.reshape(b, 2 * h, 2 * w, o) + bias).astype(self.dtype)


class UpBlock(nn.Module):
    """Decoder stage: :class:`UpConv` halving the channels, skip concat, :class:`DoubleConv`.

    Attributes:
        features: Output channels.
        groups: GroupNorm groups.
        dtype: Compute dtype.
    """

    features: int
    groups: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        """Upsample ``x`` ``(B, H, W, C)``, concatenate ``skip`` ``(B, 2H, 2W, features)``."""
        x = UpConv(x.shape[-1] // 2, dtype=self.dtype, name="up")(x)
        return DoubleConv(self.features, self.groups, dtype=self.dtype, name="conv")(
            jnp.concatenate([x, skip], axis=-1)
        )


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2, stride-2 max-pool of ``(B, H, W, C)`` with even ``H`` and ``W``."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class UNetGN(nn.Module):
    """U-Net with GroupNorm, NHWC in, NHWC logits out.

    Attributes:
        num_classes: Output classes.
        base_channels: Channels of the first encoder block, doubled at each level.
        depth: Number of downsamplings.
        groups: GroupNorm groups.
        dtype: Compute dtype: ``jnp.float32`` (default) or ``jnp.bfloat16`` (mixed
            precision like torch's CPU autocast; logits are always ``float32``).
    """

    num_classes: int = 11
    base_channels: int = 32
    depth: int = 4
    groups: int = 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Compute ``(B, H, W, num_classes)`` logits from ``(B, H, W, C)`` input."""
        chans = [self.base_channels * 2**i for i in range(self.depth + 1)]
        skips = []
        for i, c in enumerate(chans):
            if i:
                x = max_pool_2x2(x)
            x = DoubleConv(c, self.groups, dtype=self.dtype, name=f"down_{i}")(x)
            skips.append(x)
        x = skips.pop()
        for j, i in enumerate(reversed(range(self.depth))):
            x = UpBlock(chans[i], self.groups, dtype=self.dtype, name=f"up_{j}")(x, skips.pop())
        head = Conv(
            self.num_classes,
            kernel_size=1,
            use_bias=True,
            dtype=self.dtype,
            out_dtype=jnp.float32,
            name="head",
        )
        return head(x)


def count_params(params: Any) -> int:
    """Return the number of scalars in a parameter pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def init_params(
    model: UNetGN, in_channels: int, seed: int = 0, size: int | None = None
) -> dict[str, Any]:
    """Initialise parameters (PyTorch-like uniform fan-in init).

    Args:
        model: The Flax module.
        in_channels: Input bands.
        seed: PRNG seed.
        size: Spatial size of the dummy input (default: ``2**depth``).

    Returns:
        The ``params`` collection.
    """
    side = size or 2**model.depth
    dummy = jnp.zeros((1, side, side, in_channels), jnp.float32)
    return jax.jit(model.init)(jax.random.PRNGKey(seed), dummy)["params"]


def _flax_path(torch_key: str) -> tuple[tuple[str, ...], str]:
    """Map ``up.0.conv.norm1.weight`` to ``(("up_0", "conv", "norm1"), "weight")``."""
    parts = torch_key.split(".")
    leaf = parts.pop()
    if parts[0] in ("down", "up") and len(parts) > 1:
        parts = [f"{parts[0]}_{parts[1]}", *parts[2:]]
    return tuple(parts), leaf


def torch_to_flax(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a torch ``UNetGN`` ``state_dict`` to a Flax ``params`` pytree.

    Args:
        state_dict: Keys and tensors (``torch.Tensor`` or numpy arrays) of
            ``senland_geo.models.unet_gn.UNetGN``.

    Returns:
        A nested dict of ``float32`` jax arrays usable as ``{"params": ...}``.

    Raises:
        ValueError: A key that is not part of a unet-gn model.
    """
    params: dict[str, Any] = {}
    for key, value in state_dict.items():
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        arr = arr.astype(np.float32)
        path, leaf = _flax_path(key)
        module = path[-1]
        if leaf == "weight" and arr.ndim == 4:
            if module == "up":  # ConvTranspose2d: (I, O, kH, kW) -> (kH, kW, I, O)
                arr = arr.transpose(2, 3, 0, 1)
            else:  # Conv2d: (O, I, kH, kW) -> (kH, kW, I, O)
                arr = arr.transpose(2, 3, 1, 0)
            name = "kernel"
        elif leaf == "weight" and arr.ndim == 1 and module.startswith("norm"):
            name = "scale"
        elif leaf == "bias":
            name = "bias"
        else:
            raise ValueError(f"torch_to_flax: unexpected unet-gn key {key!r} {arr.shape}")
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[name] = jnp.asarray(arr)
    return params
