"""Landmark accuracy and timing on synthetic heads (MediaPipe + lifting); prints JSON.

Usage: python benchmarks/bench_landmarks.py [--seeds 1 2 ... 10] [--data ../shared/data]
Errors are distances to FLAME's own landmark embedding on the head, / head height
(reflame_core/synthetic/scoring.py; a landmark not placed is a miss
of one head height).
Run from the repository root with PYTHONPATH=. so this checkout's reflame_core is used.
Seeds 11-30 trained the MediaPipe index table (tools/fit_mediapipe_table.py): keep them out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.landmarks.detect import detect_landmarks
from reflame_core.landmarks.detector import get_detector
from reflame_core.synthetic.head import make_synthetic_head
from reflame_core.synthetic.scoring import GROUPS, landmark_errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    ap.add_argument("--scan-vertices", type=int, default=20000,
                    help="head size (tests use SMALL_TARGET_VERTICES = 4000)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
                    / "data")
    a = ap.parse_args()
    tpl = load_flame_template(a.data / "flame")
    emb = load_landmark_embedding(a.data / "flame")
    tex = cv2.cvtColor(cv2.imread(str(a.data / "textures" / "facescape_texmap.jpg")),
                       cv2.COLOR_BGR2RGB)
    det = get_detector("mediapipe")
    errs, times = [], []
    for seed in a.seeds:
        h = make_synthetic_head(tpl, tex, emb, seed=seed, target_vertices=a.scan_vertices)
        t = time.perf_counter()
        lms = detect_landmarks(h.scan, backend=det)
        times.append(time.perf_counter() - t)
        errs.append(landmark_errors(h, lms.positions(h.scan.vertices, h.scan.faces)[:68]))
    e = np.stack(errs)
    pct = lambda x: [round(float(v), 4) for v in np.nanpercentile(x, [50, 90, 100])]  # noqa: E731
    edges = [0, 0.01, 0.02, 0.03, 0.05, np.inf]
    print(json.dumps({
        "seeds": a.seeds,
        "scan_vertices": a.scan_vertices,
        "detect_seconds": [round(t, 2) for t in times],
        "within_2pct_per_seed": [round(float(v), 3) for v in np.mean(e < 0.02, axis=1)],
        "within_2pct_all": round(float(np.mean(e < 0.02)), 4),
        "histogram_all": {f"{lo:.0%}-{hi:.0%}": int(np.sum((e >= lo) & (e < hi)))
                          for lo, hi in zip(edges[:-1], edges[1:], strict=True)},
        "within_2pct_per_group": {g: round(float(np.mean(e[:, s] < 0.02)), 3)
                                  for g, s in GROUPS.items()},
        "p50_p90_max_per_group": {g: pct(e[:, s]) for g, s in GROUPS.items()},
        "p50_p90_max_all": pct(e),
        "per_landmark_median": [round(float(v), 4) for v in np.median(e, 0)],
        "per_landmark_max": [round(float(v), 4) for v in np.max(e, 0)],
    }, indent=1))


if __name__ == "__main__":
    main()
