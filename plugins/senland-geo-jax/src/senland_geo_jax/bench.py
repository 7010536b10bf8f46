"""Train/inference throughput of the JAX backend on ``unet-gn``.

``senland-geo bench`` calls :func:`run`; ``python bench_jax.py`` prints its rows as JSON.
Every row names the engine (CPU model, core count, jax version, devices) it ran on.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


def _time_calls(fn: Any, calls: int) -> tuple[float, float, list[float]]:
    """Call ``fn`` ``calls`` times; return (best wall s, median wall s, all wall s)."""
    walls = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return min(walls), float(np.median(walls)), walls


def run(
    batch_sizes: tuple[int, ...] = (8, 16),
    steps: int = 5,
    fused_steps: int = 4,
    *,
    size: int = 64,
    in_channels: int = 10,
    num_classes: int = 11,
    inference: bool = False,
    seed: int = 0,
    precisions: tuple[str, ...] = ("fp32",),
    **model_options: Any,
) -> list[dict[str, Any]]:
    """Measure train-step images/s for per-step jit and fused multi-step training.

    For each batch size it builds ``unet-gn`` (``model_options`` as the torch builder),
    puts random ``(B, size, size, in_channels)`` batches on the device, compiles, then
    times ``steps`` single jitted steps and ``max(1, steps // fused_steps)`` calls of
    the fused function, each running ``fused_steps`` unrolled steps. With
    ``inference=True`` it also times ``steps`` forward passes.

    Args:
        batch_sizes: Batch sizes to measure.
        steps: Timed calls per mode (after one untimed compile call).
        fused_steps: Steps fused in one XLA program (0 skips the fused mode).
        size: Patch side in pixels (divisible by ``2**depth``).
        in_channels: Input bands.
        num_classes: Output classes.
        inference: Also measure the jitted forward pass.
        seed: Seed of parameters and random data.
        precisions: ``fp32`` and/or ``bf16`` (mixed precision, see
            :class:`senland_geo_jax.model.UNetGN`); bf16 rows' modes end in ``-bf16``.
        **model_options: ``base_channels``, ``depth``, ``groups``.

    Returns:
        One dict per (batch size, mode) with ``images_per_s`` (from the median step time),
        ``images_per_s_best``, ``compile_s`` and the engine description.
    """
    import jax

    from senland_geo_jax.backend import JaxBackend

    engine = JaxBackend.describe()
    base_common = {
        "backend": "jax",
        "model": "unet-gn",
        "patch": [in_channels, size, size],
        "cpu_model": engine["cpu_model"],
        "cpu_count": engine["cpu_count"],
        "jax_version": engine.get("jax_version"),
        "devices": engine.get("devices"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    rows: list[dict[str, Any]] = []
    for precision, bs in ((p, b) for p in precisions for b in batch_sizes):
        rng = np.random.default_rng(seed)
        sfx = "" if precision == "fp32" else f"-{precision}"
        common = {**base_common, "precision": precision}
        backend = JaxBackend(seed=seed).build(
            "unet-gn",
            in_channels=in_channels,
            num_classes=num_classes,
            precision=precision,
            **model_options,
        )
        nparams = backend.num_params
        k = max(fused_steps, 1)
        x_np = rng.standard_normal((k, bs, in_channels, size, size), dtype=np.float32)
        y_np = rng.integers(0, num_classes, (k, bs, size, size))
        xs, ys = backend.to_device(x_np, y_np)
        x1, y1 = xs[0], ys[0]

        def one_step(x1: Any = x1, y1: Any = y1, backend: JaxBackend = backend) -> None:
            backend.state, loss = backend._step(backend.state, x1, y1)
            loss.block_until_ready()

        t0 = time.perf_counter()
        one_step()
        compile_s = time.perf_counter() - t0
        best, med, walls = _time_calls(one_step, steps)
        rows.append(
            {
                **common,
                "mode": "train-jit" + sfx,
                "batch_size": bs,
                "params": nparams,
                "steps": steps,
                "compile_s": round(compile_s, 2),
                "step_s_median": round(med, 4),
                "images_per_s": round(bs / med, 2),
                "images_per_s_best": round(bs / best, 2),
            }
        )
        if fused_steps > 0:

            def fused(xs: Any = xs, ys: Any = ys, backend: JaxBackend = backend) -> None:
                backend.state, losses = backend._fused(backend.state, xs, ys)
                losses.block_until_ready()

            t0 = time.perf_counter()
            fused()
            compile_s = time.perf_counter() - t0
            calls = max(1, steps // fused_steps)
            best, med, walls = _time_calls(fused, calls)
            rows.append(
                {
                    **common,
                    "mode": f"train-fused-unrolled-{fused_steps}{sfx}",
                    "batch_size": bs,
                    "params": nparams,
                    "steps": calls * fused_steps,
                    "compile_s": round(compile_s, 2),
                    "step_s_median": round(med / fused_steps, 4),
                    "images_per_s": round(bs * fused_steps / med, 2),
                    "images_per_s_best": round(bs * fused_steps / best, 2),
                }
            )
        if inference:
            params = backend.state.params

            def infer(x1: Any = x1, params: Any = params, backend: JaxBackend = backend) -> None:
                backend._predict(params, x1).block_until_ready()

            t0 = time.perf_counter()
            infer()
            compile_s = time.perf_counter() - t0
            best, med, walls = _time_calls(infer, steps)
            rows.append(
                {
                    **common,
                    "mode": "infer-jit" + sfx,
                    "batch_size": bs,
                    "params": nparams,
                    "steps": steps,
                    "compile_s": round(compile_s, 2),
                    "step_s_median": round(med, 4),
                    "images_per_s": round(bs / med, 2),
                    "images_per_s_best": round(bs / best, 2),
                }
            )
        del backend, xs, ys
        jax.clear_caches()
    return rows
