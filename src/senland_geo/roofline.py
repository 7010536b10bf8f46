"""The machine's own ceilings (matmul and conv peaks, fp32/bf16) and FLOP counts of steps.

A throughput in images/s means little alone. This module measures what the CPU (or GPU)
reaches on a large dense matmul, counts the FLOPs of a training step or a forward pass with
:class:`torch.utils.flop_counter.FlopCounterMode`, and turns an images/s figure into
achieved GFLOP/s and a fraction of that measured peak.

FLOPs follow torch's convention: a multiply-add counts 2, ``mm(m,k)x(k,n)`` is ``2mkn``;
element-wise ops (norms, activations, the optimizer) are not counted, so the fraction of peak
is the fraction of the matmul/convolution ceiling the step's dense work reaches.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(
    precision: str = "fp32",
    sizes: Sequence[int] = (2048, 3072, 4096),
    *,
    repeats: int = 5,
    device: str | torch.device = "cpu",
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """Measure dense ``torch.mm`` throughput, the ceiling the models are compared against.

    Each size is warmed up once, then timed ``repeats`` times (more while the total is under
    ``min_seconds``); the best time gives that size's GFLOP/s (the least disturbed run on a
    shared machine) and the peak is the best over sizes.

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16``.
        sizes: Square matrix sides ``n`` (``2 n^3`` FLOPs each).
        repeats: Timed calls per size.
        device: Where to run (``cpu`` or ``cuda[:N]``).
        min_seconds: Keep repeating a size until this much time was spent on it.

    Returns:
        ``{"precision", "gflops" (peak), "by_size": {n: {"best", "median"}}}`` in GFLOP/s.
    """
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r}: choose one of {sorted(DTYPES)}")
    dev = torch.device(device)
    dtype = DTYPES[precision]
    by_size: dict[str, dict[str, float]] = {}
    for n in sizes:
        a = torch.randn(n, n, device=dev).to(dtype)
        b = torch.randn(n, n, device=dev).to(dtype)
        torch.mm(a, b)
        _sync(dev)
        walls: list[float] = []
        spent = 0.0
        while len(walls) < repeats or spent < min_seconds:
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(dev)
            walls.append(time.perf_counter() - t0)
            spent += walls[-1]
        flops = 2.0 * n**3
        by_size[str(n)] = {
            "best": round(flops / min(walls) / 1e9, 1),
            "median": round(flops / statistics.median(walls) / 1e9, 1),
        }
        del a, b
    peak = max(v["best"] for v in by_size.values())
    return {"precision": precision, "gflops": peak, "by_size": by_size}


def conv_peak(
    precision: str = "fp32",
    *,
    batch: int = 16,
    channels: int = 256,
    side: int = 32,
    repeats: int = 5,
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """Measure a large 3x3 convolution's throughput: the ceiling of the U-Nets' own kernels.

    The U-Nets' convolutions run in oneDNN (``torch.backends.mkldnn``), which picks its
    kernels by CPU features; ``torch.mm`` runs in MKL, which on AMD CPUs takes a slower
    generic path (docs/performance.md). A 3x3, ``channels -> channels`` convolution on a
    ``(batch, channels, side, side)`` input is compute-bound, so its GFLOP/s is the
    fastest the conv kernels of a training step can go. bf16 runs under CPU autocast, as
    the models do.

    Args:
        precision: ``fp32`` or ``bf16``.
        batch: Batch size of the input.
        channels: Input and output channels.
        side: Height and width of the input.
        repeats: Timed calls (after one warm-up).
        min_seconds: Keep repeating until this much time was spent.

    Returns:
        ``{"precision", "gflops" (best call), "median_gflops", "shape"}``.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"conv_peak precision {precision!r}: choose fp32 or bf16")
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    x = torch.randn(batch, channels, side, side)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    flops = 2.0 * batch * side * side * channels * channels * 9
    walls: list[float] = []
    with torch.inference_mode(), amp:
        conv(x)
        spent = 0.0
        while len(walls) < repeats or spent < min_seconds:
            t0 = time.perf_counter()
            conv(x)
            walls.append(time.perf_counter() - t0)
            spent += walls[-1]
    return {
        "precision": precision,
        "gflops": round(flops / min(walls) / 1e9, 1),
        "median_gflops": round(flops / statistics.median(walls) / 1e9, 1),
        "shape": [batch, channels, side, side],
    }


def count_flops(fn: Callable[[], Any]) -> int:
    """Count the FLOPs torch executes while calling ``fn`` once.

    Args:
        fn: A no-argument callable, e.g. one training step.

    Returns:
        Total FLOPs (a multiply-add counts 2).
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def train_step_flops(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> int:
    """FLOPs of one forward + loss + backward pass of ``model`` on the batch ``(x, y)``.

    The optimizer update is element-wise and adds no counted FLOPs. Gradients are left
    on the model's parameters; zero them before relying on them.
    """

    def step() -> None:
        loss = loss_fn(model(x), y)
        loss.backward()

    flops = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``x`` (inference mode)."""
    with torch.inference_mode():
        return count_flops(lambda: model(x))


def fraction_of_peak(
    images_per_s: float, flops_per_image: float, peak_gflops: float
) -> tuple[float, float]:
    """Achieved GFLOP/s and the fraction of a measured peak.

    Args:
        images_per_s: Measured throughput.
        flops_per_image: Counted FLOPs per image for the same work.
        peak_gflops: Measured matmul peak of the same precision and thread count.

    Returns:
        ``(achieved GFLOP/s, achieved / peak)``; NaN fraction when the peak is not positive.
    """
    achieved = images_per_s * flops_per_image / 1e9
    frac = achieved / peak_gflops if peak_gflops > 0 else math.nan
    return achieved, frac
