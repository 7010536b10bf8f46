"""The Backend protocol: one interface for cpu, cuda (torch) and jax (separate plugin)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Backend(Protocol):
    """An engine that runs senland-geo models.

    Torch backends also provide ``device`` (a ``torch.device``), ``setup()``,
    ``autocast()``, ``prepare_model(model)`` and ``prepare_batch(x)``.
    """

    name: str

    def is_available(self) -> tuple[bool, str]:
        """Return whether this backend can run here, and why not if it can't."""
        ...

    def describe(self) -> dict[str, Any]:
        """Return the hardware and software this backend runs on."""
        ...


def adamw(
    params: Iterable[torch.nn.Parameter],
    device: torch.device,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    fused: bool = True,
    **kwargs: Any,
) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step on CPU and CUDA when ``fused`` is set.

    See :meth:`TorchBackendMixin.make_optimizer` for why (the training engine and the
    benchmark both build their optimizer here).

    Args:
        params: Parameters (or parameter groups) to optimise.
        device: Where the parameters live (fusion needs CPU or CUDA).
        lr: Learning rate.
        weight_decay: Decoupled weight decay.
        fused: Use the fused implementation where the device has one.
        **kwargs: Other ``torch.optim.AdamW`` arguments.
    """
    use_fused = fused and device.type in ("cpu", "cuda")
    kwargs.setdefault("fused", True if use_fused else None)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kwargs)


class TorchBackendMixin:
    """What the torch backends share: memory format, optional ``torch.compile``, autocast.

    Subclasses set ``device``, ``precision``, ``channels_last``, ``compile``,
    ``compile_mode`` and optionally ``fused_optimizer`` (default True).
    """

    device: torch.device
    precision: str
    channels_last: bool
    compile: bool
    compile_mode: str | None

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for the chosen precision (a no-op for fp32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move a model to the device, in the chosen memory format, compiled if asked.

        Returns the module to call: ``torch.compile``'s wrapper when ``compile`` is set
        (its parameters are the original module's, so optimizers and ``state_dict`` work).
        """
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            model = torch.compile(model, mode=self.compile_mode)
        return model

    def prepare_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Move an input batch to the device, channels-last when asked and 4-D."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def make_optimizer(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        **kwargs: Any,
    ) -> torch.optim.AdamW:
        """AdamW, fused into one kernel per step when ``fused_optimizer`` is set.

        ``torch.optim.AdamW``'s default (``foreach``) implementation runs about ten
        element-wise passes over every parameter, moment and gradient; on a 24M-parameter
        U-Net on 2 CPU cores that is 10-20% of an fp32 training step and about a quarter of
        a bf16 one (docs/performance.md). ``fused=True`` (CPU and CUDA, torch >= 2.4) does
        the same update in one pass.

        Args:
            params: Parameters (or parameter groups) to optimise.
            lr: Learning rate.
            weight_decay: Decoupled weight decay.
            **kwargs: Other ``torch.optim.AdamW`` arguments (``betas``, ``eps``, ...).

        Returns:
            The optimizer.
        """
        fused = getattr(self, "fused_optimizer", True)
        return adamw(params, self.device, lr=lr, weight_decay=weight_decay, fused=fused, **kwargs)

    def _options(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "compile_mode": self.compile_mode,
            "fused_optimizer": getattr(self, "fused_optimizer", True),
        }
