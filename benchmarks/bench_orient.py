"""Auto-orientation (``landmarks/orient.find_frame``) on re-posed benchmark heads; prints JSON.

    PYTHONPATH=. python benchmarks/bench_orient.py --heads 10 --scenarios base no_texture

Head i of a scenario is the benchmark world's head of seed ``SCORED_SEEDS[i]`` (1001, ...)
under the scenario, then re-posed: one of the 24 axis frames (any axis up, any other front;
drawn from a generator seeded with the seed) and a tilt of 0-25 degrees about a random axis.
Scored per head: the angle between the found and the true up, and front; whether the nearest
scan axis to each is the true one's (what a user would have typed as --up/--front); the
confidence; the seconds ``find_frame`` took (CPU, 4000-vertex heads by default).

``--seeds`` picks the heads by seed instead; ``--as-generated`` keeps each head's own pose
(the scenario's: the generator's up to 10 degrees, or the rotation condition's 10-25).

With ``--scan FILE`` (a real scan, +y up and facing +z in its file) the scan itself is turned
to each of the 24 axis frames instead, in a fixed order; ``--tilt`` adds a 10-25 degree tilt
about a random axis to each (drawn in that order from ``numpy.random.default_rng(7)``).

    PYTHONPATH=. python benchmarks/bench_orient.py \
        --scan ../shared/data/scans/lee_perry_smith/LeePerrySmith.glb [--tilt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.io.scan import load_scan
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


def axis_frames() -> list[np.ndarray]:
    """The 24 axis frames (3,3), columns: the scan directions of +x, +y (up), +z (front)."""
    out = []
    for up in AXES:
        for front in AXES:
            if abs(up @ front) < 0.5:
                out.append(np.stack([np.cross(up, front), up, front]).T)
    return out


def turned_scan_rows(path: Path, tilt: bool, detector) -> list[dict]:
    """``find_frame`` on the scan at ``path`` turned to each axis frame (and tilted)."""
    scan = load_scan(path)
    rng = np.random.default_rng(7)
    rows = []
    for i, frame in enumerate(axis_frames()):
        if tilt:
            frame = rotation_matrix(rng.normal(size=3), rng.uniform(10.0, 25.0)) @ frame
        turned = replace(scan, vertices=(scan.vertices @ frame.T).astype(np.float32),
                         _normals=None)
        t = time.perf_counter()
        found = find_frame(turned, detector)
        rows.append({
            "frame": i, "up": frame[:, 1].round(3).tolist(), "front": frame[:, 2].round(3).tolist(),
            "seconds": round(time.perf_counter() - t, 2), "confidence": round(found.confidence, 3),
            "up_error_deg": round(angle(found.up, frame[:, 1]), 1),
            "front_error_deg": round(angle(found.front, frame[:, 2]), 1),
            "axes_right": nearest(found.up) == nearest(frame[:, 1])
            and nearest(found.front) == nearest(frame[:, 2]),
        })
        print(rows[-1], file=sys.stderr)
    return rows


def angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0))))


def nearest(v: np.ndarray) -> int:
    return int(np.argmax(AXES @ v))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=["base"])
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", help="these seeds instead of --heads")
    ap.add_argument("--as-generated", action="store_true",
                    help="keep each head's own pose (the scenario's) instead of re-posing it")
    ap.add_argument("--scan-vertices", type=int, default=4000)
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("REFLAME_TEST_DATA", default_data)))
    ap.add_argument("--scan", type=Path, help="a real scan to turn instead of world heads")
    ap.add_argument("--tilt", action="store_true", help="with --scan: tilt each frame too")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.scan is not None:
        rows = turned_scan_rows(a.scan, a.tilt, get_detector("mediapipe"))
        json.dump({"scan": str(a.scan), "tilt": a.tilt,
                   "machine": platform.processor() or platform.machine(),
                   "axes_right": int(sum(r["axes_right"] for r in rows)), "frames": len(rows),
                   "rows": rows}, sys.stdout, indent=1)
        print()
        return 0
    template = load_flame_template(a.data / "flame")
    embedding = load_landmark_embedding(a.data / "flame")
    texture = np.asarray(Image.open(a.data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    detector = get_detector("mediapipe")
    rows = []
    seeds = a.seeds or list(SCORED_SEEDS[: a.heads])
    for name in a.scenarios:
        for seed in seeds:
            head = make_world_head(template, texture, embedding, name, seed,
                                   target_vertices=a.scan_vertices)
            if not a.as_generated:
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
        "scenarios": a.scenarios, "seeds": seeds, "as_generated": a.as_generated,
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
