"""The ``cpu`` backend: PyTorch on CPU threads (OpenMP intra-op parallelism)."""

from __future__ import annotations

import os
import warnings
from functools import cache
from typing import Any

import torch

from senland_geo import hw
from senland_geo.backends.base import TorchBackendMixin
from senland_geo.backends.conv_wgrad import limit_bf16_weight_grad_threads

PRECISIONS = ("fp32", "bf16", "fp16")


class CPUBackend(TorchBackendMixin):
    """PyTorch on the CPU.

    Convolutions run in oneDNN (``torch.backends.mkldnn``), matmuls in MKL; see
    ``docs/performance.md`` for what each setting gains on a given machine.

    Args:
        threads: Intra-op threads (default: the physical cores this process may use).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast; bf16 is fast only where the
            CPU has AVX512-BF16 or AMX, fp16 only with AVX512-FP16/AMX-FP16). bf16 on a
            CPU without oneDNN bf16 support (:func:`native_bf16`, e.g. AVX2-only CPUs)
            warns: torch then runs bf16 convolutions in its slow reference kernel.
        channels_last: Use the channels-last memory format for 4-D tensors.
        compile: Wrap models in ``torch.compile`` (Inductor) in :meth:`prepare_model`.
        compile_mode: ``torch.compile`` mode (None, ``max-autotune``, ...).
        mkldnn: Leave oneDNN enabled for convolutions (``torch.backends.mkldnn.enabled``).
        fused_optimizer: :meth:`make_optimizer` returns the fused (one-pass) AdamW.
        bf16_wgrad_threads: With ``precision="bf16"`` and more threads than this,
            :meth:`prepare_model` computes convolution weight gradients on this many
            threads (oneDNN's bf16 weight-gradient kernel stalls on 2 threads; see
            :mod:`senland_geo.backends.conv_wgrad`). ``None`` keeps torch's behaviour.
            ``"env"`` (default) reads ``SENLAND_BF16_WGRAD_THREADS`` (unset: ``None``).
            The work-around wins only when the cores are shared (measured: unet-gn bf16
            13.7 vs 4.8 img/s at load 5-7, but 39.2 vs 53.5 img/s at load 3.5), so it is
            opt-in.
    """

    name = "cpu"

    def __init__(
        self,
        threads: int | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        mkldnn: bool = True,
        fused_optimizer: bool = True,
        bf16_wgrad_threads: int | str | None = "env",
    ) -> None:
        if bf16_wgrad_threads == "env":
            bf16_wgrad_threads = bf16_wgrad_threads_from_env()
        if precision not in PRECISIONS:
            raise ValueError(
                f"cpu backend precision {precision!r}: choose one of {', '.join(PRECISIONS)}"
            )
        if threads is not None and threads < 1:
            raise ValueError(f"cpu backend threads={threads}: must be >= 1 (or None for auto)")
        if bf16_wgrad_threads is not None and bf16_wgrad_threads < 1:
            raise ValueError(
                f"cpu backend bf16_wgrad_threads={bf16_wgrad_threads}: must be >= 1, "
                "or None to keep torch's threading"
            )
        self.threads = threads or hw.physical_cores()
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode
        self.mkldnn = mkldnn
        self.fused_optimizer = fused_optimizer
        self.bf16_wgrad_threads = bf16_wgrad_threads
        self.device = torch.device("cpu")
        if precision == "bf16" and not native_bf16():
            warnings.warn(bf16_emulated_message(), RuntimeWarning, stacklevel=2)

    @staticmethod
    def is_available() -> tuple[bool, str]:
        """The CPU is always available."""
        return True, ""

    def setup(self) -> None:
        """Apply the thread count and the oneDNN switch (process-wide torch settings)."""
        torch.set_num_threads(self.threads)
        torch.backends.mkldnn.enabled = self.mkldnn

    def limit_bf16_weight_grads(self, model: torch.nn.Module) -> int:
        """Compute ``model``'s bf16 conv weight gradients on ``bf16_wgrad_threads`` threads.

        Applies when ``precision="bf16"``, ``bf16_wgrad_threads`` is set and below
        ``threads``, and ``compile`` is off (see :mod:`senland_geo.backends.conv_wgrad`);
        parameters, ``state_dict`` and results are unchanged.

        Returns:
            The number of convolutions changed (0 when it does not apply).
        """
        if (
            self.precision != "bf16"
            or self.bf16_wgrad_threads is None
            or self.bf16_wgrad_threads >= self.threads
            or self.compile
        ):
            return 0
        return limit_bf16_weight_grad_threads(model, self.bf16_wgrad_threads)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Limit bf16 weight-gradient threads, then move, format and compile as asked."""
        self.limit_bf16_weight_grads(model)
        return super().prepare_model(model)

    def describe(self) -> dict[str, Any]:
        """Hardware description, with the options in use."""
        info = hw.describe("cpu")
        return {
            **info,
            "backend": self.name,
            "threads": self.threads,
            "mkldnn": self.mkldnn,
            "bf16_wgrad_threads": self.bf16_wgrad_threads,
            "bf16_native": native_bf16(),
            **self._options(),
        }


#: Environment variable naming the bf16 weight-gradient threads (unset: torch's threading).
WGRAD_ENV = "SENLAND_BF16_WGRAD_THREADS"


def bf16_wgrad_threads_from_env() -> int | None:
    """``SENLAND_BF16_WGRAD_THREADS`` as an int, or ``None`` when unset or empty.

    Raises:
        ValueError: The variable is set to something other than a positive integer.
    """
    value = os.environ.get(WGRAD_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{WGRAD_ENV}={value!r}: must be a positive integer (e.g. 1), or unset for "
            "torch's own threading"
        )
    return int(value)


def bf16_emulated_message() -> str:
    """What happens with bf16 on a CPU without oneDNN bf16 support, and what to do."""
    capability = hw.library_versions().get("cpu_capability") or "unknown"
    return (
        "precision='bf16' on a CPU without bf16 support in oneDNN (no AVX512-BF16, AMX or "
        f"AVX-512; torch's CPU capability: {capability}): torch runs bf16 convolutions in its "
        "slow reference kernel (aten::_slow_conv2d), measured 14-19x slower than fp32 for "
        "unet-resnet34 on an AVX2 AMD EPYC. Use precision 'fp32' (--precision fp32) here."
    )


@cache
def native_bf16() -> bool:
    """Whether torch runs bf16 convolutions in oneDNN on this CPU.

    This is the check torch itself makes before sending a bf16 convolution to oneDNN
    (``mkldnn_bf16_device_check``: AVX512-BF16, AMX, AVX-NE-CONVERT, or AVX-512 with
    oneDNN's emulation); without it, bf16 convolutions fall back to ``_slow_conv2d``.
    """
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and torch.backends.mkldnn.is_available():
        try:
            return bool(check())
        except RuntimeError:
            pass
    flags = hw.cpu_flags()
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))
