"""``JaxBackend``: the JAX/Flax training and inference backend.

Arrays cross the boundary as numpy in senland-geo's layout (images ``(B, C, H, W)``
float32, labels ``(B, H, W)`` int with -100 for "no label", logits ``(B, K, H, W)``);
inside, everything is NHWC and device-resident.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np

SUPPORTED_MODELS = ("unet-gn",)
INSTALL_HINT = "pip install -e plugins/senland-geo-jax  (pulls jax[cpu], flax, optax)"


def cpu_model() -> str:
    """Return the CPU model name read from ``/proc/cpuinfo`` (or ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


class JaxBackend:
    """Train and run ``unet-gn`` with JAX/Flax on the devices JAX picks.

    Typical use::

        backend = JaxBackend()
        backend.build("unet-gn", in_channels=10, num_classes=11, lr=1e-3)
        loss = backend.train_step(x_nchw, y)            # one jitted step
        losses = backend.train_steps(xs_knchw, ys_khw)  # k fused steps
        logits = backend.predict(x_nchw)                # (B, K, H, W) numpy

    Args:
        seed: PRNG seed for parameter initialisation.
    """

    name = "jax"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.model: Any = None
        self.state: Any = None
        self.model_options: dict[str, Any] = {}
        self._optimizer: Any = None
        self._step: Any = None
        self._fused: Any = None
        self._predict: Any = None

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def is_available() -> tuple[bool, str]:
        """Tell whether jax, flax and optax import and JAX sees a device.

        Returns:
            ``(True, description)`` or ``(False, reason with the install command)``.
        """
        try:
            import flax  # noqa: F401
            import jax
            import optax  # noqa: F401
        except ImportError as exc:
            return False, f"{exc}; install with: {INSTALL_HINT}"
        try:
            devices = jax.devices()
        except RuntimeError as exc:  # e.g. JAX_PLATFORMS=cuda without a GPU
            return False, (
                f"JAX found no device for JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', '')!r}: "
                f"{exc}"
            )
        return True, f"jax {jax.__version__} on {', '.join(str(d) for d in devices)}"

    @staticmethod
    def describe() -> dict[str, Any]:
        """Describe the engine: versions, devices and CPU, read from the machine.

        Returns:
            A JSON-serialisable dict.
        """
        info: dict[str, Any] = {
            "backend": "jax",
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "jax_platforms": os.environ.get("JAX_PLATFORMS", ""),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        }
        ok, reason = JaxBackend.is_available()
        info["available"] = ok
        if not ok:
            info["reason"] = reason
            return info
        import flax
        import jax
        import jaxlib
        import optax

        devices = jax.devices()
        info.update(
            jax_version=jax.__version__,
            jaxlib_version=jaxlib.__version__,
            flax_version=flax.__version__,
            optax_version=optax.__version__,
            default_backend=jax.default_backend(),
            devices=[f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
            device_kind=devices[0].device_kind,
        )
        return info

    # ---------------------------------------------------------------- building
    def build(
        self,
        model: str = "unet-gn",
        in_channels: int = 10,
        num_classes: int = 11,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        dice_weight: float = 1.0,
        torch_state_dict: Mapping[str, Any] | None = None,
        precision: str = "fp32",
        **options: Any,
    ) -> JaxBackend:
        """Create the Flax model, its parameters, AdamW and the jitted functions.

        Args:
            model: Model name; only ``unet-gn`` has a Flax twin.
            in_channels: Input bands.
            num_classes: Output classes.
            lr: AdamW learning rate.
            betas: AdamW ``(b1, b2)``.
            eps: AdamW epsilon.
            weight_decay: AdamW decoupled weight decay.
            dice_weight: Weight of the Dice term in the CE + Dice loss.
            torch_state_dict: Optional ``state_dict`` of the torch ``unet-gn`` to start
                from (same options); otherwise a seeded fresh initialisation.
            precision: ``fp32`` or ``bf16`` (bf16 operands with fp32 accumulation, fp32
                parameters and GroupNorm statistics, like torch's CPU autocast).
            **options: ``base_channels``, ``depth``, ``groups`` (as the torch builder).

        Returns:
            ``self``, for chaining.

        Raises:
            ValueError: An unsupported model or option.
        """
        if model not in SUPPORTED_MODELS:
            raise ValueError(
                f"the jax backend has no Flax version of model {model!r}; "
                f"supported: {', '.join(SUPPORTED_MODELS)} (use backend 'cpu' for the others)"
            )
        allowed = {"base_channels", "depth", "groups"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(
                f"unet-gn: unknown option(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(allowed))}"
            )
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"jax backend precision {precision!r}: choose fp32 or bf16")
        import jax.numpy as jnp

        from senland_geo_jax import model as flax_model
        from senland_geo_jax import train

        dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
        self.model = flax_model.UNetGN(num_classes=num_classes, dtype=dtype, **options)
        self.model_options = dict(in_channels=in_channels, num_classes=num_classes, **options)
        if torch_state_dict is not None:
            params = flax_model.torch_to_flax(torch_state_dict)
        else:
            params = flax_model.init_params(self.model, in_channels, seed=self.seed)
        self._optimizer = train.make_optimizer(lr, betas, eps, weight_decay)
        self.state = train.create_train_state(params, self._optimizer)
        self._loss_kwargs = {"dice_weight": dice_weight}
        self._step = train.make_train_step(self.model.apply, self._optimizer, **self._loss_kwargs)
        self._fused = train.make_fused_train_steps(
            self.model.apply, self._optimizer, **self._loss_kwargs
        )
        self._predict = train.make_predict(self.model.apply)
        return self

    def _require_built(self) -> None:
        if self.state is None:
            raise RuntimeError("JaxBackend: call build(...) before training or predicting")

    @property
    def num_params(self) -> int:
        """Number of model parameters."""
        self._require_built()
        from senland_geo_jax.model import count_params

        return count_params(self.state.params)

    # ------------------------------------------------------------ data transfer
    @staticmethod
    def to_device(x_nchw: np.ndarray, y: np.ndarray | None = None) -> Any:
        """Move a numpy batch to the default device as NHWC float32 (+ int32 labels).

        Accepts ``(B, C, H, W)`` or stacked ``(k, B, C, H, W)`` images; labels
        ``(B, H, W)`` or ``(k, B, H, W)``.

        Args:
            x_nchw: Images.
            y: Optional labels.

        Returns:
            A device array, or a ``(x, y)`` pair when ``y`` is given.
        """
        import jax

        x = np.asarray(x_nchw, dtype=np.float32)
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (B, C, H, W) or (k, B, C, H, W) images, got {x.shape}")
        x = np.ascontiguousarray(np.moveaxis(x, -3, -1))
        xd = jax.device_put(x)
        if y is None:
            return xd
        yd = jax.device_put(np.asarray(y, dtype=np.int32))
        return xd, yd

    # ---------------------------------------------------------------- training
    def train_step(self, x: Any, y: Any) -> float:
        """Run one jitted AdamW step.

        Args:
            x: ``(B, C, H, W)`` numpy images, or NHWC device arrays from :meth:`to_device`.
            y: ``(B, H, W)`` labels (numpy or device).

        Returns:
            The loss before the update.
        """
        self._require_built()
        if isinstance(x, np.ndarray):
            x, y = self.to_device(x, y)
        self.state, loss = self._step(self.state, x, y)
        return float(loss)

    def train_steps(self, xs: Any, ys: Any) -> np.ndarray:
        """Run ``k`` AdamW steps in one fused, unrolled XLA program.

        Each new ``k`` (or batch shape) compiles a new program, whose compile time grows
        with ``k``.

        Args:
            xs: ``(k, B, C, H, W)`` numpy images, or ``(k, B, H, W, C)`` device arrays.
            ys: ``(k, B, H, W)`` labels.

        Returns:
            The ``k`` losses.
        """
        self._require_built()
        if isinstance(xs, np.ndarray):
            xs, ys = self.to_device(xs, ys)
        self.state, losses = self._fused(self.state, xs, ys)
        return np.asarray(losses)

    # --------------------------------------------------------------- inference
    def predict(self, x: Any) -> np.ndarray:
        """Compute logits.

        Args:
            x: ``(B, C, H, W)`` numpy images (or an NHWC device array).

        Returns:
            ``(B, K, H, W)`` float32 numpy logits.
        """
        self._require_built()
        if isinstance(x, np.ndarray):
            x = self.to_device(x)
        logits = np.asarray(self._predict(self.state.params, x))
        return np.ascontiguousarray(logits.transpose(0, 3, 1, 2))

    def params_numpy(self) -> dict[str, Any]:
        """Return the current parameters as a nested dict of numpy arrays."""
        self._require_built()
        import jax

        return jax.tree_util.tree_map(np.asarray, self.state.params)
