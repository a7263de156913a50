"""Where a batch runs: a local Dask cluster with one worker process per visible GPU (each
pinned to its GPU through ``CUDA_VISIBLE_DEVICES``), or CPU worker processes; or an existing
cluster (``--scheduler ADDRESS``). Every worker runs ``ReflameWorkerPlugin`` when it starts
(and again when a dead one is restarted): it loads the FLAME assets and, on a GPU, the
nvdiffrast plugin, once per process rather than once per scan.
"""

from __future__ import annotations

import logging
import os

from distributed import Nanny, Scheduler, SpecCluster, WorkerPlugin


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable torch CUDA: no GPU workers
        return []


def worker_envs(device: str, workers: int | None) -> list[dict[str, str]]:
    """One environment per worker process: with GPUs (and device not "cpu"), one per GPU
    (at most ``workers``), each seeing only its GPU; otherwise ``workers`` CPU workers (1 by
    default) sharing the cores."""
    gpus = visible_gpus() if device != "cpu" else []
    cores = os.cpu_count() or 1
    if gpus:
        gpus = gpus[:workers] if workers else gpus
        threads = str(max(1, cores // len(gpus)))
        return [{"CUDA_VISIBLE_DEVICES": g, "OMP_NUM_THREADS": threads} for g in gpus]
    n = max(1, workers or 1)
    threads = str(max(1, cores // n))
    return [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            for _ in range(n)]


def local_cluster(envs: list[dict[str, str]], *, dashboard: bool = True) -> SpecCluster:
    """A local cluster of ``len(envs)`` single-threaded worker processes (under Nannies,
    which restart a worker that dies), worker ``i`` started with ``envs[i]``."""
    workers = {
        f"reflame-{i}": {
            "cls": Nanny,
            "options": {"nthreads": 1, "env": env, "memory_limit": 0,
                        "silence_logs": logging.ERROR},
        }
        for i, env in enumerate(envs)
    }
    # Port 0: any free port, so that two batches (or a user's own cluster) never collide.
    scheduler = {"cls": Scheduler, "options": {"port": 0, "dashboard_address": ":0",
                                               "dashboard": dashboard and has_bokeh()}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR,
                       name="reflame-batch")


def has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


class ReflameWorkerPlugin(WorkerPlugin):
    """Loads what every fit on a worker shares when the worker starts."""

    name = "reflame"

    def __init__(self, flame_dir: str) -> None:
        self.flame_dir = flame_dir

    def setup(self, worker) -> None:
        from reflame_core.batch.task import worker_assets

        worker_assets(self.flame_dir)
        warm_renderer()


def warm_renderer() -> str:
    """Load (building on first use) the nvdiffrast plugin when this process has a GPU;
    returns the backend's name. nvdiffrast keeps the loaded plugin for the process."""
    import torch

    if not torch.cuda.is_available():
        return "torch"
    from reflame_core.render.backends import get_backend

    return type(get_backend("auto", "cuda")).__name__
