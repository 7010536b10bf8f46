"""DistributedDataParallel: several processes, one global batch, identical weights.

Every rank draws the same seeded global batch and keeps its share ``rank::world_size``
(:class:`senland_geo.train.ShardedBatchSampler`); DDP averages the gradients, so with a
loss that is a mean over equal shards (cross-entropy) the weights match a single process
trained on the global batch, within float tolerance. Validation runs on every rank (the
early-stopping decision is then identical everywhere); only rank 0 writes files.

The process-group backend is NCCL on CUDA GPUs and gloo on CPU.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn


def process_group_backend(device_type: str | None = None) -> str:
    """``nccl`` when CUDA GPUs are used and NCCL is built, else ``gloo``."""
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap a model in DDP (BatchNorm layers become SyncBatchNorm)."""
    from torch.nn.parallel import DistributedDataParallel

    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index or 0])
    return DistributedDataParallel(model)


def _worker(
    rank: int,
    world_size: int,
    port: int,
    backend: str,
    threads: int,
    fn: Callable[..., Any],
    args: tuple,
) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def launch(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    backend: str | None = None,
    threads_per_process: int | None = None,
) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes.

    Args:
        fn: A picklable (module-level) function.
        world_size: Number of processes.
        *args: Picklable arguments passed to every rank.
        backend: Process-group backend (default: :func:`process_group_backend`).
        threads_per_process: Torch threads per rank (default: cores / processes, >= 1).
    """
    import torch.multiprocessing as mp

    from senland_geo import hw

    backend = backend or process_group_backend()
    threads = threads_per_process or max(1, hw.physical_cores() // world_size)
    mp.spawn(
        _worker,
        args=(world_size, free_port(), backend, threads, fn, args),
        nprocs=world_size,
        join=True,
    )


def _train_rank(rank: int, world_size: int, cube_path: str, out_dir: str, config: Any) -> None:
    from senland_geo.train import train

    device_backend = "cuda" if dist.get_backend() == "nccl" else config.backend
    if device_backend == "cuda":
        config.backend = "cuda"
    else:
        config.threads = config.threads or torch.get_num_threads()
    train(cube_path, out_dir, config, progress=rank == 0, rank=rank, world_size=world_size)


def train_distributed(
    cube_path: str | Path, out_dir: str | Path, config: Any, nproc: int = 2
) -> dict[str, Any]:
    """:func:`senland_geo.train.train` in ``nproc`` DDP processes; returns rank 0's metrics.

    On CPU each process gets ``cores // nproc`` threads; on GPUs one GPU per process.
    """
    import json

    from senland_geo.errors import UserError

    if config.folds > 1:
        raise UserError("k-fold cross-validation runs in one process; drop --nproc or --folds")
    if config.batch_size % nproc:
        raise UserError(f"batch size {config.batch_size} must be divisible by {nproc} processes")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = "nccl" if gpus >= nproc and config.backend in (None, "cuda") else "gloo"
    if backend == "gloo" and config.backend is None:
        config.backend = "cpu"
    launch(_train_rank, nproc, str(cube_path), str(out_dir), config, backend=backend)
    return json.loads((Path(out_dir) / "metrics.json").read_text())
