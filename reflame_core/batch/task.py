"""One scan's fit on a batch worker: ``run_job(JobSpec) -> JobOutcome``, never raising for a
failed fit (the outcome says why, in one line), so one bad scan never stops the others.

FLAME assets are loaded once per worker process (``worker_assets``; the worker plugin loads
them when the worker starts) and shared by every scan that worker fits.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from reflame_core.batch.folder import discard, publish, staging_dir
from reflame_core.fit.config import FitConfig
from reflame_core.fit.setup import FlameAssets, load_flame

_ASSETS: dict[str, FlameAssets] = {}  # flame folder -> assets, per worker process


def worker_assets(flame_dir: str) -> FlameAssets:
    """The FLAME assets of ``flame_dir``, loaded on the first call in this process."""
    if flame_dir not in _ASSETS:
        _ASSETS[flame_dir] = load_flame(flame_dir)
    return _ASSETS[flame_dir]


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs for one attempt at one scan (pickled to the worker).

    ``config`` is this attempt's (the fallback's on a retry); ``job_hash`` is always that
    of the configuration asked for, so a scan finished by a fallback counts as done.
    """

    name: str
    scan: str
    landmarks: str | None
    out_root: str
    config: FitConfig
    job_hash: str
    flame_dir: str
    device: str = "auto"
    attempt: int = 1
    fallback: str | None = None


@dataclass
class JobOutcome:
    """What became of one attempt. ``status``: "done" or "failed"; ``out_of_memory``: the
    failure may pass on a retry that needs less memory."""

    name: str
    status: str
    seconds: float
    error: str | None = None
    out_of_memory: bool = False
    report: dict | None = None
    device: str | None = None
    worker: str = ""
    attempt: int = 1
    fallback: str | None = None
    messages: list[str] = field(default_factory=list)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA or host out-of-memory, as torch and Python raise it."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:
        pass
    return "out of memory" in str(exc).lower()


def run_job(spec: JobSpec) -> JobOutcome:
    """Fit one scan into a staging folder and publish it as ``out_root/name``.

    A fit that finished, or that diverged (its outputs kept for inspection, reported
    failed), is published; one that raised leaves nothing.
    """
    from reflame_core.fit.run import fit_scan

    start = time.perf_counter()
    out_root = Path(spec.out_root)
    messages: list[str] = []
    outcome = JobOutcome(spec.name, "failed", 0.0, worker=socket.gethostname(),
                         attempt=spec.attempt, fallback=spec.fallback, messages=messages)
    staging = staging_dir(out_root, spec.name)
    try:
        batch_info = {"job_hash": spec.job_hash, "input": spec.scan, "attempt": spec.attempt,
                      "fallback": spec.fallback}
        result = fit_scan(spec.scan, staging, landmarks=spec.landmarks, config=spec.config,
                          device=spec.device, flame=worker_assets(spec.flame_dir),
                          log=messages.append, report_extra={"batch": batch_info})
    except Exception as exc:  # noqa: BLE001 - any failure is this scan's alone
        discard(staging)
        outcome.error = one_line(exc)
        outcome.out_of_memory = is_out_of_memory(exc)
        outcome.device = _device_of(spec.device)
        _release_gpu_memory()
    else:
        publish(staging, out_root / spec.name)
        outcome.report = result.report
        outcome.device = result.report.get("device")
        if result.ok:
            outcome.status = "done"
        else:
            outcome.error = result.error or f"fit {result.status}"
    outcome.seconds = time.perf_counter() - start
    return outcome


def _device_of(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _release_gpu_memory() -> None:
    """After an out-of-memory error the allocator's cache holds what the failed fit took."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort; the next fit reports any real problem
        pass
