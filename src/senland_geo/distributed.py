"""Where cube building runs: a dask.distributed LocalCluster, an existing cluster, or threads.

``dask.distributed`` is imported only when a cluster is asked for, so ``import
senland_geo`` stays light.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from senland_geo.errors import UserError

#: Scheduler names that use dask's built-in single-machine schedulers (no cluster).
LOCAL_SCHEDULERS = ("threads", "sync", "synchronous", "single-threaded")


def _memory_limit(n_workers: int) -> int:
    import psutil

    return int(psutil.virtual_memory().total * 0.8 / n_workers)


@contextmanager
def dask_scheduler(
    scheduler: str | None = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: int | str | None = None,
    connect_timeout: str = "10s",
) -> Iterator[Any]:
    """Run the dask computations inside the block on the chosen scheduler.

    Args:
        scheduler: ``"local"``: start a :class:`distributed.LocalCluster` (worker processes)
            for the block; an address (``tcp://host:8786`` or ``host:8786``): connect to an
            existing cluster; ``"threads"`` / ``"sync"``: dask's threaded or synchronous
            scheduler in this process; None: leave dask's current scheduler as it is.
        n_workers: LocalCluster workers (default: CPU count, at most 4).
        threads_per_worker: Threads per LocalCluster worker.
        memory_limit: Per-worker memory limit (default: 80% of RAM shared out).
        connect_timeout: How long to wait for an existing scheduler.

    Yields:
        The ``distributed.Client`` in use, or None for the in-process schedulers.

    Raises:
        UserError: The scheduler address can't be reached or the name is unknown.
    """
    if scheduler is None:
        yield None
        return
    if scheduler in LOCAL_SCHEDULERS:
        import dask

        name = "sync" if scheduler != "threads" else "threads"
        with dask.config.set(scheduler=name):
            yield None
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        n = n_workers or max(1, min(4, os.cpu_count() or 1))
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=threads_per_worker,
                processes=True,
                memory_limit=memory_limit or _memory_limit(n),
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster, set_as_default=True) as client,
        ):
            yield client
        return
    if "://" not in scheduler and ":" not in scheduler:
        raise UserError(
            f"scheduler {scheduler!r} is neither 'local', 'threads', 'sync' nor an address "
            "like tcp://host:8786; pass one of those with --scheduler"
        )
    try:
        client = Client(scheduler, timeout=connect_timeout, set_as_default=True)
    except (OSError, TimeoutError) as exc:
        raise UserError(
            f"cannot connect to the dask scheduler at {scheduler} ({exc}); start one with "
            "'dask scheduler' and 'dask worker ADDRESS', or omit --scheduler for a local cluster"
        ) from None
    try:
        yield client
    finally:
        client.close()
