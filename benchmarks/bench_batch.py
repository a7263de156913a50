"""``reflame batch`` throughput: scans per minute on one GPU and on every visible GPU, and the
scheduling overhead per scan; prints JSON.

    python benchmarks/bench_batch.py                     # GPU: 1 GPU, then all visible GPUs
    python benchmarks/bench_batch.py --cpu-check         # CPU, tiny: 1 then 2 CPU workers

It writes its own synthetic heads (``--vertices``, 20k by default, seeds from 2001: the
tuning seeds, no accuracy is scored here) with their true landmarks into a temporary folder,
then for each layout starts a local Dask cluster exactly as ``reflame batch`` does, runs one
warm-up scan per worker (FLAME assets, nvdiffrast plugin, CUDA context and kernels: what
every long batch pays once per worker), then times ``run_batch`` on ``--scans`` scans.

Numbers per layout: ``scans_per_minute`` (timed scans / wall time of ``run_batch``, planning,
hashing and the summary included); ``worker_seconds_per_scan`` (a fit as the worker ran it:
load, fit, write, publish); ``fit_seconds_per_scan`` (the fit's own steps, report.json);
``overhead_seconds_per_scan`` = (wall x workers - worker seconds) / scans: the time a worker
is not fitting, i.e. scheduling, the driver's work and the tail where a worker waits for the
last scan; ``dask_roundtrip_ms``: one no-op task through the scheduler and back.

FLAME data comes from --data (default: $REFLAME_TEST_DATA or ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding  # noqa: E402
from reflame_core.batch.cluster import local_cluster, visible_gpus, worker_envs  # noqa: E402
from reflame_core.batch.schedule import BatchOptions, run_batch  # noqa: E402
from reflame_core.synthetic.dataset import write_synthetic_dataset  # noqa: E402

# --cpu-check: small enough for a 2-core CI-like machine, still every part of the path.
TINY = ["cameras.num_views=2", "cameras.resolution=48", "stages.affine.steps=2",
        "stages.coarse.steps=6", "stages.refine.steps=3", "stages.coarse.surface_samples=1000",
        "stages.refine.surface_samples=1000", "stages.texture.enabled=false"]
FIRST_SEED = 2001


def make_heads(data: Path, folder: Path, count: int, vertices: int) -> Path:
    template = load_flame_template(data / "flame")
    embedding = load_landmark_embedding(data / "flame")
    texture = np.asarray(Image.open(data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    return write_synthetic_dataset(folder, template, texture, embedding,
                                   range(FIRST_SEED, FIRST_SEED + count),
                                   target_vertices=vertices)


def split_manifest(manifest: Path, warm: int, timed: int) -> tuple[Path, Path]:
    """The first ``warm`` rows as a warm-up manifest, the last ``timed`` as the timed one
    (the same scans for every layout)."""
    header, *rows = manifest.read_text().splitlines()
    w, t = manifest.with_name(f"warm-up-{warm}.csv"), manifest.with_name("timed.csv")
    w.write_text("\n".join([header, *rows[:warm]]) + "\n")
    t.write_text("\n".join([header, *rows[-timed:]]) + "\n")
    return w, t


def roundtrip_ms(client, n: int = 200) -> float:
    futures = [client.submit(int, i, pure=False) for i in range(n)]  # warm the path first
    client.gather(futures)
    t0 = time.perf_counter()
    for i in range(n // 4):
        client.submit(int, i, pure=False).result()
    return 1000.0 * (time.perf_counter() - t0) / (n // 4)


def run_layout(name: str, envs: list[dict], heads: Path, scans: int, work: Path,
               opts: dict) -> dict:
    from distributed import Client

    n = len(envs)
    warm, timed = split_manifest(heads, n, scans)
    t0 = time.perf_counter()
    cluster = local_cluster(envs, dashboard=False)
    client = Client(cluster)
    client.wait_for_workers(n)
    start_s = time.perf_counter() - t0
    try:
        common = dict(scheduler=cluster.scheduler_address, quiet=True, retries=0, **opts)
        t0 = time.perf_counter()
        warm_doc = run_batch(BatchOptions([str(warm)], work / f"{name}-warm-up", **common))
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        doc = run_batch(BatchOptions([str(timed)], work / f"{name}-timed", **common))
        wall = time.perf_counter() - t0
        rt = roundtrip_ms(client)
    finally:
        client.close()
        cluster.close()
    rows = doc["scans"]
    worker_s = sum(r["seconds"] for r in rows)
    fit_s = [json.loads((Path(r["out_dir"]) / "report.json").read_text())["total_seconds"]
             for r in rows if r["out_dir"]]
    return {
        "workers": n,
        "gpus": [e["CUDA_VISIBLE_DEVICES"] for e in envs if e["CUDA_VISIBLE_DEVICES"]],
        "scans": len(rows),
        "done": doc["done"],
        "failed": doc["failed"],
        "errors": sorted({r["error"] for r in rows if r["error"]}),
        "wall_seconds": wall,
        "scans_per_minute": 60.0 * doc["done"] / wall,
        "worker_seconds_per_scan": worker_s / len(rows),
        "fit_seconds_per_scan": float(np.mean(fit_s)) if fit_s else None,
        "overhead_seconds_per_scan": (wall * n - worker_s) / len(rows),
        "dask_roundtrip_ms": rt,
        "cluster_start_seconds": start_s,
        "warm_up_seconds": warm_s,
        "warm_up_done": warm_doc["done"],
        "devices": sorted({r["device"] for r in rows if r["device"]}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "REFLAME_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--scans", type=int, default=8, help="timed scans per layout")
    ap.add_argument("--vertices", type=int, default=20000, help="scan size")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--layouts", default="one,all",
                    help="comma list of: one (1 worker), all (one per GPU / --workers)")
    ap.add_argument("--workers", type=int, default=2, help="CPU workers for 'all' (CPU)")
    ap.add_argument("--cpu-check", action="store_true",
                    help="CPU, 4k-vertex heads, tiny fits: checks the benchmark, not a result")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()

    device = "cpu" if args.cpu_check or not visible_gpus() else "cuda"
    overrides = list(args.overrides)
    vertices, preset = args.vertices, args.preset
    if args.cpu_check:
        vertices, preset, overrides = min(vertices, 4000), "fast", [*TINY, *overrides]
    layouts = {
        "one": worker_envs(device, 1),
        "all": worker_envs(device, None if device == "cuda" else args.workers),
    }
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_batch-"))
    work.mkdir(parents=True, exist_ok=True)
    most = max(len(layouts[k]) for k in args.layouts.split(","))
    t0 = time.perf_counter()
    heads = make_heads(args.data, work / "heads", args.scans + most, vertices)
    gen_s = time.perf_counter() - t0
    opts = dict(preset=preset, overrides=overrides, flame_dir=args.data / "flame",
                device=device)
    results = {k: run_layout(k, layouts[k], heads, args.scans, work, opts)
               for k in args.layouts.split(",")}
    out = {
        "benchmark": "bench_batch",
        "device": device,
        "gpu_names": _gpu_names() if device == "cuda" else [],
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "preset": preset,
        "overrides": overrides,
        "scan_vertices": vertices,
        "seeds": [FIRST_SEED, FIRST_SEED + args.scans + most - 1],
        "head_generation_seconds": gen_s,
        "layouts": results,
        "work_folder": str(work),
    }
    if "one" in results and "all" in results and results["one"]["scans_per_minute"]:
        out["speedup_all_vs_one"] = (results["all"]["scans_per_minute"]
                                     / results["one"]["scans_per_minute"])
    print(json.dumps(out, indent=2))


def _gpu_names() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


if __name__ == "__main__":
    main()
