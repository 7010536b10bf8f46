"""Throughput benchmark: training step and inference in images/s, against the machine's peak.

:func:`run` times, on random device-resident ``64x64x10`` batches:

* the full training step (forward + CE+Dice via :class:`senland_geo.train.SegmentationLoss`
  + backward + AdamW) and inference, for each torch mode (eager, channels_last, bf16 (the
  cpu backend's default), ``bf16-stock`` (torch's own threading for weight gradients),
  ``bf16-wgrad1`` (weight gradients on one thread, :mod:`senland_geo.backends.conv_wgrad`),
  bf16 + channels_last, ``torch.compile``),
  batch sizes 8 and 16, models ``unet-resnet34`` and ``unet-gn``;
* JAX per-step jit and fused multi-step training of the identical ``unet-gn`` through the
  ``senland-geo-jax`` plugin (``senland_geo_jax.bench.run``) when it is installed;
* AgrUNet (``agrunet-pastis``) on ``(T, 10, 64, 64)`` series, full ``T=32`` and a
  January-July window ``T=16``;
* thread strong scaling ``1..N``;
* a plain-library baseline next to ``unet-resnet34``: the same smp ``Unet("resnet34")``
  trained with plain cross-entropy and ``torch.optim.AdamW``'s defaults, no senland code,
  so each of our rows carries ``vs_plain`` (our img/s / the plain step's img/s);
* the fp32 and bf16 ``torch.mm`` peak (MKL) and the peak of a large 3x3 convolution
  (oneDNN, the library the U-Nets' convolutions run in), so every row reports achieved
  GFLOP/s (counted with :class:`torch.utils.flop_counter.FlopCounterMode`) and its fraction
  of both.

The training step uses the backend's optimizer (fused AdamW by default, see
:meth:`senland_geo.backends.base.TorchBackendMixin.make_optimizer`). Each row also carries
the process CPU time of the median step: with ``OMP_WAIT_POLICY=PASSIVE`` and a busy machine
it approximates what the step would cost on idle cores better than the wall time does.

Every row carries the engine label and the 1-minute load average at the time it was
measured: on a shared machine a figure measured under load is not the machine's capability.
:func:`write_outputs` writes the JSON, a bar chart and a scaling plot, each naming the
hardware.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from senland_geo import hw, roofline

#: Torch modes: name -> (precision, channels_last, compile).
TORCH_MODES: dict[str, tuple[str, bool, bool]] = {
    "eager": ("fp32", False, False),
    "channels_last": ("fp32", True, False),
    "bf16": ("bf16", False, False),
    "bf16-channels_last": ("bf16", True, False),
    "bf16-stock": ("bf16", False, False),
    "bf16-wgrad1": ("bf16", False, False),
    "compile": ("fp32", False, True),
    "compile-bf16": ("bf16", False, True),
}

#: bf16 weight-gradient threads per mode (:mod:`senland_geo.backends.conv_wgrad`): ``bf16-stock``
#: keeps torch's threading, ``bf16-wgrad1`` computes them on one thread (the shared-machine
#: work-around); other modes follow the cpu backend's default (``SENLAND_BF16_WGRAD_THREADS``).
WGRAD_THREADS_BY_MODE: dict[str, int | None] = {"bf16-stock": None, "bf16-wgrad1": 1}

SCHEMA_VERSION = 1


@dataclass
class BenchConfig:
    """What :func:`run` measures.

    Args:
        models: 2-D segmentation models (registry names) for the mode x batch table.
        model_options: Per-model builder options, e.g. ``{"unet-gn": {"base_channels": 8}}``.
        batch_sizes: Training and inference batch sizes.
        modes: Torch modes (keys of :data:`TORCH_MODES`).
        steps: Timed steps per row (after ``warmup`` untimed ones).
        warmup: Untimed steps (the first one of a compiled mode is its compile time).
        size: Patch side in pixels.
        in_channels: Bands.
        num_classes: Classes.
        inference: Also time inference (``inference_mode``) for every row.
        threads: Threads for the table (default: physical cores).
        scaling_threads: Thread counts of the strong-scaling sweep (default ``1..threads``;
            empty disables it).
        scaling_model: Model of the scaling sweep.
        scaling_batch: Batch size of the scaling sweep.
        scaling_modes: Modes of the scaling sweep.
        agrunet: AgrUNet model name (None disables the temporal rows).
        agrunet_lengths: Series lengths ``T`` (32 = full PASTIS year, 16 = January-July).
        agrunet_batch: AgrUNet batch size (training is ~420 GFLOP/sample at T=32).
        agrunet_steps: Timed AgrUNet steps.
        agrunet_modes: AgrUNet torch modes.
        agrunet_options: AgrUNet builder options.
        jax: Run the JAX plugin's benchmark when installed.
        jax_fused_steps: Training steps fused in one XLA program.
        jax_precisions: JAX compute precisions (``fp32``, ``bf16`` mixed precision).
        jax_timeout: Seconds allowed for the JAX subprocess.
        peak_sizes: Matrix sides of the matmul peak.
        peak_repeats: Timed matmuls per size.
        peak_min_seconds: Minimum seconds spent timing each peak size (best call wins).
        conv_peak: Also measure the oneDNN 3x3-conv peak (fp32, bf16).
        fused_optimizer: Train with the fused AdamW (False: torch's default foreach).
        baseline: Time the plain-library smp baseline next to ``unet-resnet34``.
        bf16_without_native: Run the torch bf16 modes also on a CPU without oneDNN bf16
            support (:func:`senland_geo.backends.cpu.native_bf16`); by default they are
            skipped with a note, since torch then runs bf16 convolutions in its reference
            kernel (14-19x slower than fp32 for unet-resnet34 on an AVX2 CPU).
        seed: Seed of weights and data.
    """

    models: tuple[str, ...] = ("unet-resnet34", "unet-gn")
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] = (8, 16)
    modes: tuple[str, ...] = (
        "eager",
        "channels_last",
        "bf16",
        "bf16-wgrad1",
        "bf16-channels_last",
        "compile",
    )
    steps: int = 8
    warmup: int = 2
    size: int = 64
    in_channels: int = 10
    num_classes: int = 11
    inference: bool = True
    threads: int | None = None
    scaling_threads: tuple[int, ...] | None = None
    scaling_model: str = "unet-gn"
    scaling_batch: int = 16
    scaling_modes: tuple[str, ...] = ("eager", "bf16")
    agrunet: str | None = "agrunet-pastis"
    agrunet_lengths: tuple[int, ...] = (16, 32)
    agrunet_batch: int = 1
    agrunet_steps: int = 2
    agrunet_modes: tuple[str, ...] = ("eager", "bf16")
    agrunet_options: dict[str, Any] = field(default_factory=dict)
    jax: bool = True
    jax_fused_steps: int = 4
    jax_precisions: tuple[str, ...] = ("fp32", "bf16")
    jax_timeout: float = 1800.0
    peak_sizes: tuple[int, ...] = (2048, 3072, 4096)
    peak_repeats: int = 5
    peak_min_seconds: float = 1.0
    conv_peak: bool = True
    fused_optimizer: bool = True
    baseline: bool = True
    bf16_without_native: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in (*self.modes, *self.scaling_modes, *self.agrunet_modes)]
        unknown = [m for m in unknown if m not in TORCH_MODES]
        if unknown:
            raise ValueError(f"unknown bench mode(s) {unknown}: choose from {list(TORCH_MODES)}")
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"steps={self.steps} must be >= 1 and warmup={self.warmup} >= 0")
        if any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes={self.batch_sizes}: all must be >= 1")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """A seconds-long configuration for CI: tiny steps, small peak, no compile/AgrUNet."""
        base: dict[str, Any] = {
            "batch_sizes": (2,),
            "modes": ("eager", "bf16"),
            "steps": 2,
            "warmup": 1,
            "scaling_batch": 2,
            "scaling_modes": ("eager",),
            "agrunet": None,
            "jax_fused_steps": 2,
            "jax_precisions": ("fp32",),
            "peak_sizes": (512,),
            "peak_repeats": 3,
            "peak_min_seconds": 0.0,
            "conv_peak": False,
            "baseline": False,
            "bf16_without_native": True,
        }
        base.update(overrides)
        return cls(**base)


def _load1() -> float | None:
    avg = hw.load_average()
    return avg[0] if avg else None


def _build(name: str, in_channels: int, num_classes: int, options: dict[str, Any]) -> Any:
    from senland_geo import registry

    torch.manual_seed(0)
    return registry.load("models", name)(
        in_channels=in_channels, num_classes=num_classes, **options
    )


def _loss_of(loss_fn: Any, out: Any, y: torch.Tensor) -> torch.Tensor:
    if isinstance(out, list | tuple):  # deep supervision, as in train.py
        return sum(loss_fn(o.float(), y) for o in out) / len(out)
    return loss_fn(out.float(), y)


def _time(fn: Callable[[], Any], steps: int, warmup: int) -> dict[str, float]:
    """Run ``warmup`` untimed calls (the first one timed apart), then ``steps`` timed.

    Returns the first call's wall time, the median and best wall time of the timed calls
    and their median process CPU time (all threads).
    """
    first = math.nan
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        if i == 0:
            first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(steps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "first_s": first,
        "median_s": statistics.median(walls),
        "best_s": min(walls),
        "cpu_s": statistics.median(cpus),
    }


def _make_batch(
    bs: int, cfg: BenchConfig, classes: int, length: int | None, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (bs, cfg.in_channels, cfg.size, cfg.size)
    if length is not None:
        shape = (bs, length, cfg.in_channels, cfg.size, cfg.size)
    x = torch.randn(shape, generator=gen)
    y = torch.randint(0, classes, (bs, cfg.size, cfg.size), generator=gen)
    return x, y


def measure_torch(
    model_name: str,
    mode: str,
    batch_size: int,
    cfg: BenchConfig,
    *,
    threads: int,
    length: int | None = None,
    model_options: dict[str, Any] | None = None,
    num_classes: int | None = None,
    steps: int | None = None,
    inference: bool | None = None,
) -> list[dict[str, Any]]:
    """Time one torch (model, mode, batch) for training and, optionally, inference.

    Args:
        model_name: Registry name of the model.
        mode: A key of :data:`TORCH_MODES`.
        batch_size: Images (or series) per step.
        cfg: Shared settings (steps, warmup, patch size, ...).
        threads: Intra-op threads of the cpu backend.
        length: Series length ``T`` for temporal models (None: 2-D model).
        model_options: Builder options.
        num_classes: Classes (default ``cfg.num_classes``).
        steps: Timed steps (default ``cfg.steps``).
        inference: Time inference too (default ``cfg.inference``).

    Returns:
        One row per task (``train``, ``infer``), with images/s from the median step.
    """
    from senland_geo.backends.cpu import CPUBackend, native_bf16
    from senland_geo.train import SegmentationLoss

    precision, channels_last, compiled = TORCH_MODES[mode]
    classes = num_classes or cfg.num_classes
    steps = steps or cfg.steps
    inference = cfg.inference if inference is None else inference
    backend = CPUBackend(
        threads=threads,
        precision=precision,
        channels_last=channels_last,
        compile=compiled,
        fused_optimizer=cfg.fused_optimizer,
        bf16_wgrad_threads=WGRAD_THREADS_BY_MODE.get(mode, "env"),
    )
    backend.setup()
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = _make_batch(batch_size, cfg, classes, length, gen)
    base = _build(model_name, cfg.in_channels, classes, model_options or {})
    params = sum(p.numel() for p in base.parameters())
    loss_fn = SegmentationLoss()

    # FLOPs are those of the fp32 eager step: the same arithmetic in every mode.
    base.train()
    train_flops = roofline.train_step_flops(base, x, y, lambda o, t: _loss_of(loss_fn, o, t))
    base.eval()
    infer_flops = roofline.forward_flops(base, x)

    net = backend.prepare_model(base)
    xb = backend.prepare_batch(x)
    opt = backend.make_optimizer(base.parameters(), lr=1e-3)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with backend.autocast():
            loss = _loss_of(loss_fn, net(xb), y)
        loss.backward()
        opt.step()

    common = {
        "framework": "torch",
        "backend": "cpu",
        "model": model_name,
        "mode": mode,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compiled,
        "batch_size": batch_size,
        "threads": threads,
        "params": params,
        "input_shape": list(x.shape[1:]),
        "optimizer": "adamw-fused" if cfg.fused_optimizer else "adamw-foreach",
        "bf16_wgrad_threads": backend.bf16_wgrad_threads if precision == "bf16" else None,
        "bf16_native": native_bf16(),
    }
    if length is not None:
        common["series_length"] = length
    rows = []
    base.train()
    load_before = _load1()
    t = _time(train_step, steps, max(cfg.warmup, 1 if compiled else 0))
    rows.append(_row(common, "train", t, batch_size, train_flops, steps, load_before, _load1()))
    if inference:
        base.eval()

        def infer() -> None:
            with torch.inference_mode(), backend.autocast():
                net(xb)

        load_before = _load1()
        t = _time(infer, steps, max(cfg.warmup, 1 if compiled else 0))
        rows.append(_row(common, "infer", t, batch_size, infer_flops, steps, load_before, _load1()))
    if compiled:
        torch._dynamo.reset()
    return rows


def _row(
    common: dict[str, Any],
    task: str,
    t: dict[str, float],
    batch_size: int,
    flops: int,
    steps: int,
    load_before: float | None,
    load_after: float | None,
) -> dict[str, Any]:
    ips = batch_size / t["median_s"]
    return {
        **common,
        "task": task,
        "steps": steps,
        "first_step_s": round(t["first_s"], 3) if math.isfinite(t["first_s"]) else None,
        "step_s_median": round(t["median_s"], 5),
        "images_per_s": round(ips, 2),
        "images_per_s_best": round(batch_size / t["best_s"], 2),
        "cpu_s_median": round(t["cpu_s"], 5),
        "gflop_per_image": round(flops / batch_size / 1e9, 4),
        "achieved_gflops": round(ips * flops / batch_size / 1e9, 1),
        "loadavg_1m": [load_before, load_after],
    }


PLAIN_MODES = {"eager": "fp32", "bf16": "bf16"}


def measure_plain_smp(
    mode: str, batch_size: int, cfg: BenchConfig, *, threads: int
) -> list[dict[str, Any]]:
    """Time the plain-library baseline of ``unet-resnet34``: no senland code in the step.

    ``segmentation_models_pytorch.Unet("resnet34")``, ``F.cross_entropy`` and
    ``torch.optim.AdamW`` with its defaults, on the same random batch as
    :func:`measure_torch`; ``bf16`` wraps the forward pass in ``torch.autocast``. This is
    what a user gets from the libraries alone, so ``our img/s / plain img/s`` says what
    senland's model, loss and optimizer choices cost or gain.

    Args:
        mode: ``eager`` (fp32) or ``bf16``.
        batch_size: Images per step.
        cfg: Shared settings.
        threads: Intra-op threads.

    Returns:
        One ``train`` row (framework ``torch-plain``).
    """
    import segmentation_models_pytorch as smp
    from torch.nn import functional as F  # noqa: N812

    precision = PLAIN_MODES[mode]
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = _make_batch(batch_size, cfg, cfg.num_classes, None, gen)
    torch.manual_seed(0)
    model = smp.Unet(
        "resnet34", encoder_weights=None, in_channels=cfg.in_channels, classes=cfg.num_classes
    ).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    amp = precision == "bf16"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()

    flops = roofline.train_step_flops(model, x, y, lambda o, t: F.cross_entropy(o, t))
    common = {
        "framework": "torch-plain",
        "backend": "cpu",
        "model": "smp-unet-resnet34",
        "mode": mode,
        "precision": precision,
        "channels_last": False,
        "compile": False,
        "batch_size": batch_size,
        "threads": threads,
        "params": sum(p.numel() for p in model.parameters()),
        "input_shape": list(x.shape[1:]),
        "optimizer": "adamw-foreach",
        "loss": "cross-entropy",
    }
    load = _load1()
    t = _time(step, cfg.steps, max(cfg.warmup, 1))
    return [_row(common, "train", t, batch_size, flops, cfg.steps, load, _load1())]


def _add_vs_plain(rows: list[dict[str, Any]], plain: list[dict[str, Any]]) -> None:
    """Give our unet-resnet34 train rows ``vs_plain``: img/s over the plain baseline's."""
    ref = {(r["batch_size"], r["precision"]): r["images_per_s"] for r in plain}
    for row in rows:
        if row["model"] != "unet-resnet34" or row["task"] != "train":
            continue
        base = ref.get((row["batch_size"], row["precision"]))
        if base:
            row["vs_plain"] = round(row["images_per_s"] / base, 3)


def matmul_peaks(cfg: BenchConfig, threads: int) -> dict[str, Any]:
    """fp32 and bf16 ``torch.mm`` peaks (MKL) and 3x3-conv peaks (oneDNN) on ``threads``.

    Without native bf16 (and ``cfg.bf16_without_native`` unset) the bf16 matmul is timed
    at one small size (marked ``"native": False``) and the bf16 conv peak is not timed.
    """
    torch.set_num_threads(threads)
    out: dict[str, Any] = {"threads": threads}
    for precision in ("fp32", "bf16"):
        load = _load1()
        if precision == "bf16" and not _bf16_runs(cfg):
            # Without native bf16 a bf16 mm runs at ~1 GFLOP/s: time one small size only.
            res = roofline.matmul_peak(precision, (512,), repeats=2)
            res["native"] = False
        else:
            res = roofline.matmul_peak(
                precision,
                cfg.peak_sizes,
                repeats=cfg.peak_repeats,
                min_seconds=cfg.peak_min_seconds,
            )
        out[precision] = {**res, "loadavg_1m": [load, _load1()]}
        if cfg.conv_peak and (precision == "fp32" or _bf16_runs(cfg)):
            load = _load1()
            conv = roofline.conv_peak(
                precision, repeats=cfg.peak_repeats, min_seconds=cfg.peak_min_seconds
            )
            out[f"conv_{precision}"] = {**conv, "loadavg_1m": [load, _load1()]}
    return out


def _add_fractions(rows: list[dict[str, Any]], peaks: dict[str, Any]) -> None:
    for row in rows:
        p = peaks.get(row.get("threads"), peaks.get("default"))
        if not p or row.get("achieved_gflops") is None:
            continue
        fp32 = p["fp32"]["gflops"]
        bf16 = row.get("precision") in ("bf16", "bfloat16")
        row["peak_fp32_gflops"] = fp32
        row["fraction_of_fp32_peak"] = round(row["achieved_gflops"] / fp32, 3)
        if bf16 and p["bf16"].get("native") is False:
            # A bf16 mm without native bf16 is a fallback, not a peak: no fraction of it.
            row["fraction_of_own_peak"] = None
        else:
            own = p["bf16"]["gflops"] if bf16 else fp32
            row["fraction_of_own_peak"] = round(row["achieved_gflops"] / own, 3)
        conv = p.get("conv_bf16" if bf16 else "conv_fp32")
        if conv:
            row["conv_peak_gflops"] = conv["gflops"]
            row["fraction_of_conv_peak"] = round(row["achieved_gflops"] / conv["gflops"], 3)


def jax_available() -> tuple[bool, str]:
    """Whether the ``senland-geo-jax`` plugin is installed (checked without importing jax)."""
    import importlib.util

    if importlib.util.find_spec("senland_geo_jax") is None:
        return False, "senland-geo-jax is not installed: pip install -e plugins/senland-geo-jax"
    return True, ""


def run_jax(cfg: BenchConfig, batch_sizes: Sequence[int]) -> tuple[list[dict[str, Any]], str]:
    """Run ``senland_geo_jax.bench.run`` in a subprocess (own XLA runtime and threads).

    Returns:
        The plugin's rows (normalised: ``framework``, ``task``, ``model``) and a note
        ('' on success, the reason otherwise).
    """
    ok, why = jax_available()
    if not ok:
        return [], why
    opts = dict(cfg.model_options.get("unet-gn", {}))
    kwargs = {
        "batch_sizes": tuple(batch_sizes),
        "steps": cfg.steps,
        "fused_steps": cfg.jax_fused_steps,
        "size": cfg.size,
        "in_channels": cfg.in_channels,
        "num_classes": cfg.num_classes,
        "inference": cfg.inference,
        "seed": cfg.seed,
        "precisions": list(cfg.jax_precisions),
        **opts,
    }
    code = (
        "import json, sys\n"
        "from senland_geo_jax.bench import run\n"
        "kw = json.loads(sys.argv[1]); kw['batch_sizes'] = tuple(kw['batch_sizes'])\n"
        "kw['precisions'] = tuple(kw['precisions'])\n"
        "print('@@JSON@@' + json.dumps(run(**kw)))\n"
    )
    load = _load1()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(kwargs)],
            capture_output=True,
            text=True,
            timeout=cfg.jax_timeout,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        return [], f"JAX benchmark timed out after {cfg.jax_timeout:.0f} s"
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@JSON@@")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return [], f"JAX benchmark failed (exit {proc.returncode}): {' | '.join(tail)}"
    rows = json.loads(line[len("@@JSON@@") :])
    load_after = _load1()
    for row in rows:
        mode = str(row.get("mode", ""))
        row["framework"] = "jax"
        row["task"] = "infer" if mode.startswith("infer") else "train"
        row["mode"] = "jax-" + mode.replace("train-", "").replace("infer-", "")
        row.setdefault("model", "unet-gn")
        row.setdefault("precision", "fp32")
        row["threads"] = None  # XLA:CPU uses its own pool over all visible cores
        row["loadavg_1m"] = [load, load_after]
    return rows, ""


def _jax_fractions(rows: list[dict[str, Any]], torch_rows: list[dict[str, Any]], peaks: Any):
    """Give JAX rows the FLOPs of the identical torch ``unet-gn`` and peak fractions.

    The Flax model has the same layers, so the torch eager row's FLOPs per image apply;
    the fractions use the peaks measured on the table's thread count.
    """
    per_image = {
        (r["task"], r["batch_size"]): r["gflop_per_image"]
        for r in torch_rows
        if r["model"] == "unet-gn" and r["mode"] == "eager"
    }
    for row in rows:
        g = per_image.get((row["task"], row["batch_size"]))
        if g is None or not row.get("images_per_s"):
            continue
        row["gflop_per_image"] = g
        row["achieved_gflops"] = round(row["images_per_s"] * g, 1)
    _add_fractions(rows, {"default": peaks})


def run(
    cfg: BenchConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
    partial: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark and return a JSON-serialisable result.

    Order: matmul peaks, the 2-D model table, JAX, thread scaling, then AgrUNet (heaviest),
    so an interrupted run on a busy machine still has the main figures.

    Args:
        cfg: What to measure (default: the full benchmark).
        log: Progress callback (e.g. ``click.echo``); silent when None.
        partial: Called with the result so far after each measured row (e.g. to write the
            JSON incrementally); its ``complete`` field is False until the end.

    Returns:
        ``{"schema", "hardware", "config", "peaks", "rows", "scaling", "notes",
        "loadavg_start", "loadavg_end", "wall_s"}``.
    """
    cfg = cfg or BenchConfig()
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    threads = cfg.threads or hw.physical_cores()
    torch.set_num_threads(threads)
    hardware = hw.describe("cpu")
    notes: list[str] = []
    load_start = hw.load_average()
    if load_start and load_start[0] > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"load average {load_start[0]} at start on {os.cpu_count()} CPUs: the machine is "
            "shared, figures are lower bounds of its capability"
        )
    say(f"engine: {hardware['engine']}; load average {load_start}")

    rows: list[dict[str, Any]] = []
    scaling: list[dict[str, Any]] = []
    peaks: dict[Any, Any] = {}
    known_notes = len(notes)
    modes, scaling_modes, agrunet_modes = _runnable_modes(cfg, notes)
    for note in notes[known_notes:]:
        say(f"note: {note}")

    def result(complete: bool = False) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "complete": complete,
            "hardware": hardware,
            "config": _jsonable(asdict(cfg)),
            "threads": threads,
            "peaks": {str(k): v for k, v in peaks.items()},
            "rows": rows,
            "scaling": scaling,
            "notes": notes,
            "loadavg_start": load_start,
            "loadavg_end": hw.load_average(),
            "wall_s": round(time.perf_counter() - t_start, 1),
        }

    def snapshot() -> None:
        if partial is not None:
            partial(result())

    say("matmul peak (fp32, bf16)")
    peaks[threads] = matmul_peaks(cfg, threads)
    say(
        f"  fp32 {peaks[threads]['fp32']['gflops']} GFLOP/s, "
        f"bf16 {peaks[threads]['bf16']['gflops']} GFLOP/s on {threads} threads"
        + (
            f"; 3x3 conv fp32 {peaks[threads]['conv_fp32']['gflops']}, "
            f"bf16 {peaks[threads].get('conv_bf16', {}).get('gflops', 'not timed')} GFLOP/s"
            if cfg.conv_peak
            else ""
        )
    )

    for model in cfg.models:
        for bs in cfg.batch_sizes:
            for mode in modes:
                say(f"torch {model} batch {bs} {mode}")
                new = measure_torch(
                    model,
                    mode,
                    bs,
                    cfg,
                    threads=threads,
                    model_options=cfg.model_options.get(model, {}),
                )
                if cfg.baseline and model == "unet-resnet34" and mode in PLAIN_MODES:
                    plain = measure_plain_smp(mode, bs, cfg, threads=threads)
                    _add_vs_plain(new, plain)
                    new.extend(plain)
                _add_fractions(new, peaks)
                rows.extend(new)
                snapshot()
                say("  " + ", ".join(f"{r['task']} {r['images_per_s']} img/s" for r in new))

    jax_rows: list[dict[str, Any]] = []
    if cfg.jax and "unet-gn" in cfg.models:
        say("jax unet-gn (per-step jit, fused)")
        jax_rows, note = run_jax(cfg, cfg.batch_sizes)
        if note:
            notes.append(f"JAX skipped: {note}")
            say(f"  skipped: {note}")
        _jax_fractions(jax_rows, rows, peaks[threads])
        rows.extend(jax_rows)
        snapshot()
    elif cfg.jax:
        notes.append("JAX skipped: it runs the identical unet-gn, which is not in --models")

    sweep = cfg.scaling_threads
    if sweep is None:
        sweep = tuple(range(1, threads + 1))
    for t in sweep:
        say(f"scaling: {t} thread(s)")
        if t not in peaks:
            peaks[t] = matmul_peaks(cfg, t)
        for mode in scaling_modes:
            new = measure_torch(
                cfg.scaling_model,
                mode,
                cfg.scaling_batch,
                cfg,
                threads=t,
                model_options=cfg.model_options.get(cfg.scaling_model, {}),
                inference=False,
            )
            _add_fractions(new, peaks)
            scaling.extend(new)
            snapshot()
    torch.set_num_threads(threads)
    if cfg.agrunet:
        for length in cfg.agrunet_lengths:
            for mode in agrunet_modes:
                say(f"torch {cfg.agrunet} T={length} batch {cfg.agrunet_batch} {mode}")
                new = measure_torch(
                    cfg.agrunet,
                    mode,
                    cfg.agrunet_batch,
                    cfg,
                    threads=threads,
                    length=length,
                    model_options=cfg.agrunet_options,
                    num_classes=20,
                    steps=cfg.agrunet_steps,
                )
                _add_fractions(new, peaks)
                rows.extend(new)
                snapshot()
                say("  " + ", ".join(f"{r['task']} {r['images_per_s']} img/s" for r in new))
    torch.set_num_threads(threads)
    for mode in scaling_modes:
        series = [r for r in scaling if r["mode"] == mode]
        one = next((r for r in series if r["threads"] == 1), None)
        for r in series:
            if one:
                r["speedup_vs_1"] = round(r["images_per_s"] / one["images_per_s"], 3)
                r["efficiency"] = round(r["speedup_vs_1"] / r["threads"], 3)

    return result(complete=True)


def _bf16_runs(cfg: BenchConfig) -> bool:
    """Whether bf16 convolutions are timed: native bf16, or forced by the config."""
    from senland_geo.backends.cpu import native_bf16

    return cfg.bf16_without_native or native_bf16()


def _runnable_modes(
    cfg: BenchConfig, notes: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The table, scaling and AgrUNet modes to run: bf16 ones only where bf16 is native.

    Without oneDNN bf16 support torch runs bf16 convolutions in its reference kernel, so
    a bf16 row would time that fallback (and take 15x as long); it is skipped with a note
    unless ``cfg.bf16_without_native`` is set.
    """
    from senland_geo.backends.cpu import bf16_emulated_message

    groups = (cfg.modes, cfg.scaling_modes, cfg.agrunet_modes)
    if _bf16_runs(cfg):
        return groups
    skipped = sorted({m for g in groups for m in g if TORCH_MODES[m][0] == "bf16"})
    if skipped:
        notes.append(
            f"torch modes {skipped} skipped: {bf16_emulated_message()} "
            "(BenchConfig(bf16_without_native=True) times them anyway)"
        )
    keep = [tuple(m for m in g if TORCH_MODES[m][0] != "bf16") for g in groups]
    return keep[0], keep[1], keep[2]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def summary_table(result: dict[str, Any]) -> str:
    """A Markdown table of every row (images/s, GFLOP/s, fraction of peak, load)."""

    def pct(v: float | None) -> str:
        return "" if v is None else f"{v:.0%}"

    lines = [
        "| framework | model | task | mode | batch | T | img/s | CPU s/step | GFLOP/s "
        "| of fp32 mm peak | of own mm peak | of conv peak | vs plain | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        load = r.get("loadavg_1m") or [None]
        vs = r.get("vs_plain")
        lines.append(
            f"| {r['framework']} | {r['model']} | {r['task']} | {r['mode']} | {r['batch_size']} "
            f"| {r.get('series_length', '')} | {r['images_per_s']} "
            f"| {r.get('cpu_s_median', '')} | {r.get('achieved_gflops', '')} "
            f"| {pct(r.get('fraction_of_fp32_peak'))} | {pct(r.get('fraction_of_own_peak'))} "
            f"| {pct(r.get('fraction_of_conv_peak'))} | {'' if vs is None else f'{vs:.2f}x'} "
            f"| {load[0]} |"
        )
    return "\n".join(lines)


def write_json(result: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``bench.json`` alone (cheap; used for incremental snapshots)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md``, ``bench_bars.png`` and ``bench_scaling.png``.

    Args:
        result: The output of :func:`run`.
        out_dir: Folder (created).

    Returns:
        The written paths by kind (``json``, ``table``, ``bars``, ``scaling``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "bench.json",
        "table": out / "bench.md",
        "bars": out / "bench_bars.png",
        "scaling": out / "bench_scaling.png",
    }
    write_json(result, out)
    engine = result["hardware"]["engine"]
    load = result.get("loadavg_start") or ["?"]
    header = (
        f"# senland-geo bench\n\nEngine: {engine}; torch {result['hardware']['torch']}; "
        f"load average at start {load}, at end {result.get('loadavg_end')}\n\n"
        + "".join(f"Note: {note}\n\n" for note in result.get("notes", []))
    )
    paths["table"].write_text(header + summary_table(result) + "\n")
    title = f"{engine}\nload avg (1 min) at start: {load[0]}"

    rows = [r for r in result["rows"] if r.get("series_length") is None]
    fig, axes = plt.subplots(1, 2, figsize=(13, max(4, 0.28 * len(rows) / 2 + 2)))
    for ax, task in zip(axes, ("train", "infer"), strict=True):
        sel = [r for r in rows if r["task"] == task]
        labels = [
            f"{r['model']} {r['mode']} b{r['batch_size']}" + (" (jax)" * (r["framework"] == "jax"))
            for r in sel
        ]
        values = [r["images_per_s"] for r in sel]
        colors = ["tab:orange" if r["framework"] == "jax" else "tab:blue" for r in sel]
        ax.barh(range(len(sel)), values, color=colors)
        ax.set_yticks(range(len(sel)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("images/s (median step)")
        ax.set_title(f"{task}: 64x64x10 patches", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["bars"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    scaling = result.get("scaling", [])
    for mode in sorted({r["mode"] for r in scaling}):
        series = sorted((r for r in scaling if r["mode"] == mode), key=lambda r: r["threads"])
        ax.plot(
            [r["threads"] for r in series],
            [r["images_per_s"] for r in series],
            marker="o",
            label=f"{series[0]['model']} {mode} b{series[0]['batch_size']}",
        )
    if scaling:
        ts = sorted({r["threads"] for r in scaling})
        base = min(scaling, key=lambda r: (r["threads"], r["mode"] != "eager"))
        ax.plot(
            ts,
            [base["images_per_s"] * t / ts[0] for t in ts],
            ls="--",
            color="grey",
            label=f"ideal ({base['mode']})",
        )
        ax.set_xticks(ts)
        ax.legend(fontsize=8)
    ax.set_xlabel("threads")
    ax.set_ylabel("training images/s")
    ax.set_title(f"Strong scaling, training step\n{title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["scaling"], dpi=120)
    plt.close(fig)
    return paths
