"""The ``cuda`` backend: PyTorch on an NVIDIA GPU, selected only where one is present."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from senland_geo import hw
from senland_geo.errors import UserError


class CUDABackend:
    """PyTorch on a CUDA GPU.

    Args:
        device_index: GPU index.
        precision: ``fp32``, ``fp16`` (AMP with gradient scaling) or ``bf16``.
        tf32: Allow TF32 matmuls/convolutions on Ampere and newer.
    """

    name = "cuda"

    def __init__(self, device_index: int = 0, precision: str = "fp32", tf32: bool = False) -> None:
        if precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"cuda backend precision {precision!r}: choose fp32, fp16 or bf16")
        ok, why = self.is_available()
        if not ok:
            raise UserError(f"backend 'cuda' can't run here: {why}; use --backend cpu")
        self.device = torch.device("cuda", device_index)
        self.precision = precision
        self.tf32 = tf32

    @staticmethod
    def is_available() -> tuple[bool, str]:
        """True when torch sees a CUDA device (real hardware introspection)."""
        if not torch.backends.cuda.is_built():
            return False, "this torch build has no CUDA support"
        if not torch.cuda.is_available():
            return False, "no CUDA GPU is visible (torch.cuda.is_available() is False)"
        return True, ""

    def setup(self) -> None:
        """Apply the TF32 switch."""
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for the chosen precision."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype)

    def describe(self) -> dict[str, Any]:
        """Hardware description of the GPU in use."""
        return {**hw.describe(str(self.device)), "backend": self.name, "precision": self.precision}
