"""The ``cuda`` backend: PyTorch on an NVIDIA GPU, selected only where one is present."""

from __future__ import annotations

from typing import Any

import torch

from senland_geo import hw
from senland_geo.backends.base import TorchBackendMixin
from senland_geo.errors import UserError

PRECISIONS = ("fp32", "fp16", "bf16")


class CUDABackend(TorchBackendMixin):
    """PyTorch on a CUDA GPU.

    Args:
        device_index: GPU index.
        precision: ``fp32``, ``fp16`` (AMP; use :meth:`grad_scaler`) or ``bf16``.
        tf32: Allow TF32 matmuls/convolutions on Ampere and newer.
        channels_last: Use the channels-last memory format for 4-D tensors.
        compile: Wrap models in ``torch.compile`` in :meth:`prepare_model`.
        compile_mode: ``torch.compile`` mode (None, ``max-autotune``, ...).
        cudnn_benchmark: Let cuDNN pick the fastest convolution for fixed shapes.

    Raises:
        UserError: Where torch sees no CUDA GPU (the message says why and what to use).
    """

    name = "cuda"

    def __init__(
        self,
        device_index: int = 0,
        precision: str = "fp32",
        tf32: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        cudnn_benchmark: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(
                f"cuda backend precision {precision!r}: choose one of {', '.join(PRECISIONS)}"
            )
        ok, why = self.is_available()
        if not ok:
            raise UserError(f"backend 'cuda' can't run here: {why}; use --backend cpu")
        count = torch.cuda.device_count()
        if not 0 <= device_index < count:
            raise UserError(
                f"backend 'cuda': device_index={device_index} but {count} GPU(s) are visible "
                f"(valid: 0..{count - 1})"
            )
        self.device = torch.device("cuda", device_index)
        self.precision = precision
        self.tf32 = tf32
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode
        self.cudnn_benchmark = cudnn_benchmark

    @staticmethod
    def is_available() -> tuple[bool, str]:
        """True when torch sees a CUDA device (real hardware introspection)."""
        if not torch.backends.cuda.is_built():
            return False, "this torch build has no CUDA support"
        if not torch.cuda.is_available():
            return False, "no CUDA GPU is visible (torch.cuda.is_available() is False)"
        return True, ""

    def setup(self) -> None:
        """Select the device and apply the TF32 and cuDNN switches."""
        torch.cuda.set_device(self.device)
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.backends.cudnn.benchmark = self.cudnn_benchmark

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")

    def describe(self) -> dict[str, Any]:
        """Hardware description of the GPU in use."""
        return {
            **hw.describe(str(self.device)),
            "backend": self.name,
            "tf32": self.tf32,
            **self._options(),
        }
