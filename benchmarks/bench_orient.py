"""Auto-orientation (``landmarks/orient.find_frame``) on re-posed benchmark heads; prints JSON.

    PYTHONPATH=. python benchmarks/bench_orient.py --heads 10 --scenarios base no_texture

Head i of a scenario is the benchmark world's head of seed ``SCORED_SEEDS[i]`` (1001, ...)
under the scenario, then re-posed: one of the 24 axis frames (any axis up, any other front;
drawn from a generator seeded with the seed) and a tilt of 0-25 degrees about a random axis.
Scored per head: the angle between the found and the true up, and front; whether the nearest
scan axis to each is the true one's (what a user would have typed as --up/--front); the
confidence; the seconds ``find_frame`` took (CPU, 4000-vertex heads by default).
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
from reflame_core.landmarks.detector import get_detector
from reflame_core.landmarks.orient import find_frame
from reflame_core.synthetic.conditions import rotation_matrix, set_pose
from reflame_core.synthetic.world import SCENARIOS, SCORED_SEEDS, make_world_head

AXES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """(3,3): one of the 24 axis frames, then a 0-25 degree tilt about a random axis."""
    up, front = rng.choice(6, 2, replace=False)
    while abs(AXES[up] @ AXES[front]) > 0.5:
        front = rng.integers(6)
    frame = np.stack([np.cross(AXES[up], AXES[front]), AXES[up], AXES[front]]).T
    return rotation_matrix(rng.normal(size=3), rng.uniform(0, 25)) @ frame


def angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0))))


def nearest(v: np.ndarray) -> int:
    return int(np.argmax(AXES @ v))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=["base"])
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--scan-vertices", type=int, default=4000)
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("REFLAME_TEST_DATA", default_data)))
    a = ap.parse_args()
    torch.set_num_threads(1)
    template = load_flame_template(a.data / "flame")
    embedding = load_landmark_embedding(a.data / "flame")
    texture = np.asarray(Image.open(a.data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    detector = get_detector("mediapipe")
    rows = []
    for name in a.scenarios:
        for seed in SCORED_SEEDS[: a.heads]:
            head = make_world_head(template, texture, embedding, name, seed,
                                   target_vertices=a.scan_vertices)
            head = set_pose(head, random_pose(np.random.default_rng([seed, 12])))
            truth = head.to_canonical.rotation  # rows: scan directions of +x, +y, +z
            t = time.perf_counter()
            found = find_frame(head.scan, detector)
            seconds = time.perf_counter() - t
            rows.append({
                "scenario": name, "seed": seed, "seconds": round(seconds, 2),
                "confidence": round(found.confidence, 3),
                "up_error_deg": round(angle(found.up, truth[1]), 1),
                "front_error_deg": round(angle(found.front, truth[2]), 1),
                "axes_right": nearest(found.up) == nearest(truth[1])
                and nearest(found.front) == nearest(truth[2]),
            })
            print(rows[-1], file=sys.stderr)
    up = np.array([r["up_error_deg"] for r in rows])
    front = np.array([r["front_error_deg"] for r in rows])
    json.dump({
        "scenarios": a.scenarios, "seeds": list(SCORED_SEEDS[: a.heads]),
        "scan_vertices": a.scan_vertices, "machine": platform.processor() or platform.machine(),
        "axes_right": int(sum(r["axes_right"] for r in rows)), "heads": len(rows),
        "up_error_deg_median_max": [float(np.median(up)), float(up.max())],
        "front_error_deg_median_max": [float(np.median(front)), float(front.max())],
        "seconds_median": float(np.median([r["seconds"] for r in rows])),
        "rows": rows,
    }, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
