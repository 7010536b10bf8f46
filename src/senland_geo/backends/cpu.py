"""The ``cpu`` backend: PyTorch on CPU threads (OpenMP intra-op parallelism)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from senland_geo import hw


class CPUBackend:
    """PyTorch on the CPU.

    Args:
        threads: Intra-op threads (default: physical cores).
        precision: ``fp32`` or ``bf16`` (autocast).
        channels_last: Use channels-last memory format for 4D tensors.
    """

    name = "cpu"

    def __init__(
        self, threads: int | None = None, precision: str = "fp32", channels_last: bool = False
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"cpu backend precision {precision!r}: choose fp32 or bf16")
        self.threads = threads or hw.physical_cores()
        self.precision = precision
        self.channels_last = channels_last
        self.device = torch.device("cpu")

    def is_available(self) -> tuple[bool, str]:
        """The CPU is always available."""
        return True, ""

    def setup(self) -> None:
        """Apply the thread count."""
        torch.set_num_threads(self.threads)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for the chosen precision."""
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        """Hardware description, with the precision in use."""
        return {**hw.describe("cpu"), "backend": self.name, "precision": self.precision}
