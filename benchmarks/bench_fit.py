"""Fit accuracy and time per stage on synthetic heads with known truth; prints JSON.

    python benchmarks/bench_fit.py --config cpu-fast      # preset 'fast', 20k-vertex scan, CPU
    python benchmarks/bench_fit.py --config gpu-seed      # preset 'seed', 40 x 448², CUDA
    python benchmarks/bench_fit.py --config gpu-default   # preset 'default', CUDA
    python benchmarks/bench_fit.py --landmarks detected   # MediaPipe landmarks, not the truth
    python benchmarks/bench_fit.py --seed 1 --save-landmarks lm1.json  # detect here, then
    python benchmarks/bench_fit.py --seed 1 --landmarks lm1.json       # fit where no detector
    python benchmarks/bench_fit.py --set stages.refine.w_landmark_3d=20   # any config override

FLAME data comes from --data (default: $REFLAME_TEST_DATA or ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.fit.config import FitConfig, parse_override
from reflame_core.fit.outputs import surface_distances
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.landmarks.detect import detect_landmarks
from reflame_core.landmarks.landmark_json import load_landmarks, save_landmarks
from reflame_core.synthetic.head import make_synthetic_head

CONFIGS = {
    "cpu-small": (
        "fast",
        "cpu",
        {
            "cameras.num_views": 6,
            "cameras.resolution": 96,
            "stages.coarse.steps": 100,
            "stages.refine.steps": 40,
        },
    ),
    "cpu-fast": ("fast", "cpu", {}),
    "gpu-seed": ("seed", "cuda", {}),
    "gpu-default": ("default", "cuda", {}),
}


def synthetic_head(data: Path, seed: int, vertices: int):
    """(template, embedding, SyntheticHead) for a seed: the same head wherever it runs."""
    template = load_flame_template(data / "flame")
    embedding = load_landmark_embedding(data / "flame")
    texture = np.asarray(Image.open(data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(template, texture, embedding, seed=seed, target_vertices=vertices)
    return template, embedding, head


def run(name: str, data: Path, seed: int, vertices: int, landmarks: str = "truth",
        extra: dict | None = None) -> dict:
    preset, device, overrides = CONFIGS[name]
    overrides = {**overrides, **(extra or {})}
    if device == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 2))
    t0 = time.perf_counter()
    template, embedding, head = synthetic_head(data, seed, vertices)
    synth_s = time.perf_counter() - t0
    cfg = FitConfig.load(preset=preset, overrides={**overrides, "stages.texture.enabled": False})
    detect_s, landmark_error = 0.0, None
    if landmarks == "truth":
        targets = LandmarkTargets.from_points(head.true_landmarks)
    else:
        t0 = time.perf_counter()
        if landmarks == "detected":
            lms = detect_landmarks(head.scan, backend="mediapipe")
        else:  # a JSON written by --save-landmarks for the same seed (no detector needed)
            lms = load_landmarks(landmarks, num_faces=len(head.scan.faces))
        detect_s = time.perf_counter() - t0
        targets = LandmarkTargets.from_landmark_set(lms, head.scan)
        lm_height = float(np.ptp(head.to_canonical.apply(head.true_vertices)[:, 1])
                          / head.to_canonical.scale)
        e = np.linalg.norm(targets.points - head.true_landmarks[targets.indices], axis=1)
        landmark_error = {"within_2pct": float(np.mean(e / lm_height < 0.02)),
                          "median": float(np.median(e / lm_height))}
    session = FitSession(head.scan, template, embedding, targets, cfg, device=device)
    height = float(np.ptp(head.true_vertices, axis=0).max())

    def errors() -> dict:
        e = np.linalg.norm(session.vertices_in_scan_frame() - head.true_vertices, axis=1) / height
        return {"mean": float(e.mean()), "p95": float(np.percentile(e, 95))}

    stages: dict[str, dict] = {}
    start = time.perf_counter()
    while not session.done:
        stage = session.current.name
        t = time.perf_counter()
        report = session.step()
        st = stages.setdefault(stage, {"iterations": 0, "seconds": 0.0})
        st["iterations"] += 1
        st["seconds"] += time.perf_counter() - t
        st["final_losses"] = report.losses
        if stage == "rigid":
            rigid_error = errors()
    total = time.perf_counter() - start
    for st in stages.values():
        st["ms_per_iteration"] = 1000 * st["seconds"] / st["iterations"]
    dist = surface_distances(
        session.vertices_in_scan_frame(), template.faces, head.scan.vertices, head.scan.faces
    )
    return {
        "config": name,
        "preset": preset,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "scan_vertices": int(len(head.scan.vertices)),
        "views": len(session.cameras.enabled_indices()),
        "resolution": session.cameras.resolution,
        "synthesis_seconds": synth_s,
        "landmarks": landmarks,
        "overrides": extra or {},
        "detect_seconds": detect_s,
        "detected_landmark_error": landmark_error,
        "vertex_error_rigid": rigid_error,
        "vertex_error_final": errors(),
        "error_reduction": rigid_error["mean"] / errors()["mean"],
        "distances_relative": {k: v / height for k, v in dist.items()},
        "stages": stages,
        "total_seconds": total,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", choices=sorted(CONFIGS), action="append")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(
            os.environ.get(
                "REFLAME_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
            )
        ),
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-vertices", type=int, default=20000)
    ap.add_argument("--landmarks", default="truth",
                    help="'truth', 'detected' (MediaPipe) or a landmark JSON of this seed's head")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="config override, as `reflame fit --set`")
    ap.add_argument("--save-landmarks", type=Path, default=None,
                    help="only detect this seed's landmarks and write them to this JSON")
    args = ap.parse_args()
    if args.save_landmarks:
        _, _, head = synthetic_head(args.data, args.seed, args.scan_vertices)
        lms = detect_landmarks(head.scan, backend="mediapipe")
        save_landmarks(args.save_landmarks, lms, head.scan.vertices, head.scan.faces)
        return 0
    names = args.config or (["gpu-seed"] if torch.cuda.is_available() else ["cpu-fast"])
    extra = dict(parse_override(o) for o in args.overrides)
    results = [run(n, args.data, args.seed, args.scan_vertices, args.landmarks, extra)
               for n in names]
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
