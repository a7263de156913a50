"""Where a fitting step's time goes: torch.profiler over the coarse and refine stages.

    python benchmarks/profile_fit.py --out DIR            # CUDA if present, preset default
    python benchmarks/profile_fit.py --preset fast --device cpu --steps 5 --warmup 2

One synthetic head (``make_world_head``, scenario ``base``, seed 1001 unless --seed, 20k
vertices, true landmarks). The rigid and affine stages run first; then, in each deform stage,
``--warmup`` steps, ``--steps`` timed steps without the profiler (wall time per step), and
``--steps`` steps under ``torch.profiler``. The named ranges are the ``record_function``
scopes of ``FitSession.step`` and ``DeformStage.step`` (solve, render, image_losses,
landmark_terms, robust_factors, surface_terms, readback, backward, grad_check, optimizer,
checkpoint, step_sync). Prints JSON: per stage and range, host (CPU) ms and GPU kernel ms per
step, kernel launches and host synchronisations per step. ``--out`` also gets the profiler's
tables as text.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.fit.config import FitConfig, parse_override
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.synthetic.world import make_world_head

RANGES = (
    "checkpoint", "solve", "render", "image_losses", "landmark_terms", "robust_factors",
    "surface_terms", "readback", "backward", "grad_check", "optimizer", "step_sync",
)
# Host calls that wait for the GPU (a device-to-host copy waits for the work before it).
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
              "cudaMemcpyAsync", "cudaMemcpy")
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                "cudaGraphLaunch")


def default_data() -> Path:
    return Path(os.environ.get("REFLAME_TEST_DATA",
                               Path(__file__).resolve().parents[2] / "shared" / "data"))


def build_session(data: Path, seed: int, vertices: int, preset: str, device: str,
                  overrides: dict) -> FitSession:
    template = load_flame_template(data / "flame")
    embedding = load_landmark_embedding(data / "flame")
    texture = np.asarray(Image.open(data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_world_head(template, texture, embedding, "base", seed, target_vertices=vertices)
    cfg = FitConfig.load(preset=preset, overrides={**overrides, "stages.texture.enabled": False})
    targets = LandmarkTargets.from_points(head.true_landmarks)
    return FitSession(head.scan, template, embedding, targets, cfg, device=device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def profile_stage(session: FitSession, warmup: int, steps: int, out: Path | None,
                  tables: bool = True) -> dict:
    """Profile the current stage: ``warmup`` steps, ``steps`` timed, ``steps`` profiled."""
    name = session.current.name
    # The first step sets the stage up (scan renders and samples, the solver): profiled alone.
    t = time.perf_counter()
    with python_profile(out, f"{name}_first_step"):
        session.step()
        _sync(session.device)
    first_ms = 1000 * (time.perf_counter() - t)
    for _ in range(warmup):
        session.step()
    with python_profile(out if tables else None, f"{name}_steps"):
        for _ in range(steps):
            session.step()
        _sync(session.device)
    _sync(session.device)
    t = time.perf_counter()
    for _ in range(steps):
        session.step()
    _sync(session.device)
    wall_ms = 1000 * (time.perf_counter() - t) / steps
    activities = [torch.profiler.ProfilerActivity.CPU]
    if session.device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            session.step()
        _sync(session.device)
    averages = prof.key_averages()
    # A range appears twice: its host span (CPU time, the kernels it launched as CUDA total)
    # and its span on the GPU timeline (idle gaps included); the host one is kept.
    by_name: dict = {}
    for e in averages:
        if e.key not in by_name or e.cpu_time_total > by_name[e.key].cpu_time_total:
            by_name[e.key] = e
    ranges = {}
    for r in RANGES:
        e = by_name.get(r)
        if e is None:
            continue
        ranges[r] = {
            "host_ms": e.cpu_time_total / 1000 / steps,
            "gpu_ms": _device_total(e) / 1000 / steps,
            "calls_per_step": e.count / steps,
        }
    gpu_kernel_ms = sum(_device_self(e) for e in averages if _is_kernel(e)) / 1000 / steps
    result = {
        "stage": name,
        "first_step_ms": first_ms,
        "wall_ms_per_step": wall_ms,
        "gpu_kernel_ms_per_step": gpu_kernel_ms,
        "kernel_launches_per_step": sum(by_name[k].count for k in LAUNCH_CALLS if k in by_name)
        / steps,
        "host_syncs_per_step": {k: by_name[k].count / steps for k in SYNC_CALLS if k in by_name},
        "ranges": ranges,
    }
    if out is not None and tables:
        table = averages.table(sort_by="cpu_time_total", row_limit=60)
        (out / f"profile_{name}_cpu.txt").write_text(table)
        if session.device == "cuda":
            key = "device_time_total" if hasattr(averages[0], "device_time_total") else (
                "cuda_time_total")
            table = averages.table(sort_by=key, row_limit=60)
            (out / f"profile_{name}_gpu.txt").write_text(table)
    return result


@contextlib.contextmanager
def python_profile(out: Path | None, name: str):
    """cProfile (Python functions, numpy and the C++ they call, by cumulative time) into
    ``out/py_NAME.txt``; nothing without ``out``."""
    if out is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        (out / f"py_{name}.txt").write_text(text.getvalue())


def _device_total(e) -> float:
    return float(getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0.0)))


def _device_self(e) -> float:
    return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))


def _is_kernel(e) -> bool:
    kind = str(getattr(e, "device_type", ""))
    annotation = getattr(e, "is_user_annotation", False) or e.key in RANGES or (
        e.key.startswith(("Optimizer.", "ProfilerStep")))
    return kind.endswith("CUDA") and _device_self(e) > 0 and not annotation


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--scan-vertices", type=int, default=20000)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=None, help="folder for the profiler tables")
    ap.add_argument("--no-step-tables", action="store_true",
                    help="write only the first steps' tables into --out")
    ap.add_argument("--texture", action="store_true",
                    help="also time (and cProfile into --out) the texture stage")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 2))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    overrides = dict(parse_override(o) for o in args.overrides)
    session = build_session(args.data, args.seed, args.scan_vertices, args.preset, args.device,
                            overrides)
    while session.current is not None and session.current.name in ("rigid", "affine"):
        session.step()
    stages = []
    while session.current is not None and session.current.name in ("coarse", "refine"):
        stages.append(profile_stage(session, args.warmup, args.steps, args.out,
                                    not args.no_step_tables))
        session.skip_stage()
    texture = None
    if args.texture:
        session.set_param("texture", "enabled", True)
        while session.current is not None and session.current.name != "texture":
            session.step()
        if session.current is not None:
            t = time.perf_counter()
            with python_profile(args.out, "texture"):
                session.step()
            texture = {"seconds": time.perf_counter() - t}
    result = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "preset": args.preset,
        "seed": args.seed,
        "scan_vertices": int(len(session.scan.vertices)),
        "views": len(session.cameras.enabled_indices()),
        "resolution": session.cameras.resolution,
        "overrides": overrides,
        "stages": stages,
        "texture_stage": texture,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        (args.out / "profile.json").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
