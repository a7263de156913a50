"""Fit resources/landmarks_mediapipe_to_ibug.json: MediaPipe's 478 points (3D) -> iBUG 68.

For each training seed a synthetic head is built (FLAME template + smooth random deformation +
remeshing + the FLAME-UV face texture), MediaPipe runs on the default detection views, and its
points are lifted and fused on the scan exactly as ``detect_landmarks`` does. The table is then
fitted against FLAME's own landmark embedding on those heads (``fit_index_table``), and checked
on held-out seeds. Prints JSON; writes the table only with --write.

With ``--scenarios``, the heads are the benchmark world's (``synthetic/world.py``) under those
scenarios, on tuning seeds only (2001-2100, ``TUNING_SEEDS``; the scored seeds are refused),
and ``--name`` picks the table written (``resources/landmarks_<name>_to_ibug.json``; e.g.
``mediapipe_untextured`` from the ``no_texture`` scenario). ``--cache DIR`` keeps each head's
fused points, so refits with other seeds or settings do not detect again.

Usage: python tools/fit_mediapipe_table.py [--data ../shared/data] [--write]
       python tools/fit_mediapipe_table.py --scenarios base proportions shape rotation \
           hue_saturation lighting --train-seeds $(seq 2001 2030) \
           --test-seeds $(seq 2091 2100) --scan-vertices 4000 --cache /tmp/fused --write
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.geometry.frame import canonical_frame
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.landmarks.definitions import (
    NUM_IBUG,
    IndexTable,
    load_index_table,
    write_index_table,
)
from reflame_core.landmarks.detect import default_cameras, detect_points, map_points
from reflame_core.landmarks.mediapipe_detector import MediaPipeDetector
from reflame_core.landmarks.table_fit import fit_index_table
from reflame_core.resources import resources_dir
from reflame_core.synthetic.head import make_synthetic_head
from reflame_core.synthetic.world import SCENARIOS, TUNING_SEEDS, make_world_head

IRIS_CENTRES = {"eye_right_centre": 468, "eye_left_centre": 473}
DESCRIPTION = (
    "MediaPipe Face Landmarker (478 points: 468 face mesh + 10 iris) to iBUG 68. Applied in 3D: "
    "each iBUG landmark is an affine combination (weights sum to 1, may be negative) of the "
    "{support} MediaPipe points nearest to it, after those points are lifted onto the scan and "
    "fused over the detection views; the result is snapped onto the surface. Fitted by "
    "tools/fit_mediapipe_table.py (constrained least squares, ridge {ridge}) on {n} synthetic "
    "FLAME heads (seeds {seeds}) against FLAME's own iBUG landmark embedding. Iris centres 468 "
    "(subject's right) and 473 (left) give the eye-centre extras."
)


def fused_points(seed: int, template, texture, embedding, detector, scenario: str | None = None,
                 scan_vertices: int = 20000) -> tuple[np.ndarray, ...]:
    """(P,3) fused MediaPipe points, (68,3) truth, head height, query: all canonical frame.

    ``scenario``: the benchmark world's head of that scenario (None: the generator's own)."""
    if scenario is None:
        head = make_synthetic_head(template, texture, embedding, seed=seed)
    else:
        head = make_world_head(template, texture, embedding, scenario, seed,
                               target_vertices=scan_vertices)
    sim = canonical_frame(head.scan.vertices)
    canon = head.scan.transformed(sim)
    query = MeshQuery(canon.vertices, canon.faces)
    fused = detect_points(canon, default_cameras(), detector, query)
    height = float(np.ptp(sim.apply(head.true_vertices)[:, 1]))
    return fused, sim.apply(head.true_landmarks), height, query


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=list(range(11, 31)))
    ap.add_argument("--test-seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--support", type=int, default=16)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS),
                    help="train and test on the benchmark world's heads (tuning seeds only)")
    ap.add_argument("--scan-vertices", type=int, default=20000)
    ap.add_argument("--name", default="mediapipe", help="table to write: landmarks_NAME_to_ibug")
    ap.add_argument("--cache", type=Path, help="folder keeping each head's fused points")
    ap.add_argument("--rows", type=int, nargs=2, metavar=("FIRST", "LAST"),
                    help="refit only iBUG landmarks FIRST..LAST; the others keep the shipped "
                         "table's rows")
    ap.add_argument("--mouth", choices=("open", "closed"),
                    help="train and test only on heads whose mouth MediaPipe reads so "
                         "(MediaPipeDetector.mouth_open)")
    ap.add_argument("--write", action="store_true", help="overwrite the table in resources/")
    a = ap.parse_args()
    if set(a.train_seeds) & set(a.test_seeds):
        ap.error("training and test seeds must differ")
    if a.scenarios and not set(a.train_seeds + a.test_seeds) <= set(TUNING_SEEDS):
        ap.error(f"world heads: only tuning seeds {TUNING_SEEDS[0]}-{TUNING_SEEDS[-1]}")

    template = load_flame_template(a.data / "flame")
    embedding = load_landmark_embedding(a.data / "flame")
    texture = cv2.cvtColor(cv2.imread(str(a.data / "textures" / "facescape_texmap.jpg")),
                           cv2.COLOR_BGR2RGB)
    detector = MediaPipeDetector()
    t0 = time.perf_counter()
    scenarios = a.scenarios or [None]

    def fused(scenario: str | None, seed: int):
        path = a.cache / f"{scenario}_{seed}_{a.scan_vertices}.npz" if a.cache else None
        if path is not None and path.exists():
            z = np.load(path)
            return z["points"], z["truth"], float(z["height"])
        f, truth, height, _ = fused_points(seed, template, texture, embedding, detector,
                                           scenario, a.scan_vertices)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, points=f.points, truth=truth, height=height)
        return f.points, truth, height

    def wanted(points: np.ndarray) -> bool:
        return a.mouth is None or detector.mouth_open(points) == (a.mouth == "open")

    train = [f for f in (fused(sc, s) for sc in scenarios for s in a.train_seeds) if wanted(f[0])]
    if not train:
        ap.error("no training head left")
    rows = np.arange(NUM_IBUG) if a.rows is None else np.arange(a.rows[0], a.rows[1] + 1)
    weights = detector.table.matrix[:NUM_IBUG].copy()
    weights[rows] = fit_index_table(np.stack([f for f, *_ in train]),
                                    np.stack([truth[rows] for _, truth, *_ in train]),
                                    support=a.support, ridge=a.ridge)
    extras = np.zeros((len(IRIS_CENTRES), weights.shape[1]))
    extras[np.arange(len(IRIS_CENTRES)), list(IRIS_CENTRES.values())] = 1.0
    names = load_index_table("mediapipe").names[:NUM_IBUG] + tuple(IRIS_CENTRES)
    table = IndexTable(np.concatenate([weights, extras]), names)

    errors, errors_current = [], []
    current = detector.table  # the shipped MediaPipe table, for comparison
    for sc in scenarios:
        for seed in a.test_seeds:
            f, truth, height, query = fused_points(seed, template, texture, embedding, detector,
                                                   sc, a.scan_vertices)
            if not wanted(f.points):
                continue
            placed = map_points(f, table, query).points[:NUM_IBUG]
            errors.append(np.linalg.norm(placed - truth, axis=1) / height)
            placed = map_points(f, current, query).points[:NUM_IBUG]
            errors_current.append(np.linalg.norm(placed - truth, axis=1) / height)
    e = np.stack(errors)
    ec = np.stack(errors_current)
    print(json.dumps({
        "scenarios": a.scenarios, "train_seeds": a.train_seeds, "test_seeds": a.test_seeds,
        "mouth": a.mouth, "train_heads": len(train), "test_heads": len(e),
        "support": a.support, "ridge": a.ridge, "seconds": round(time.perf_counter() - t0, 1),
        "rows": [int(rows[0]), int(rows[-1])],
        "max_abs_weight": round(float(np.abs(weights[rows]).max()), 3),
        "test_rows_within_2pct": round(float(np.mean(e[:, rows] < 0.02)), 3),
        "test_rows_median": round(float(np.nanmedian(e[:, rows])), 5),
        "shipped_rows_within_2pct": round(float(np.mean(ec[:, rows] < 0.02)), 3),
        "shipped_rows_median": round(float(np.nanmedian(ec[:, rows])), 5),
        "test_rows_per_head_mean": [round(float(v), 4) for v in np.nanmean(e[:, rows], 1)],
        "shipped_rows_per_head_mean": [round(float(v), 4) for v in np.nanmean(ec[:, rows], 1)],
        "test_within_2pct_per_seed": [round(float(v), 3) for v in np.mean(e < 0.02, 1)],
        "test_within_2pct_contour": round(float(np.mean(e[:, :17] < 0.02)), 3),
        "test_within_2pct_inner": round(float(np.mean(e[:, 17:] < 0.02)), 3),
        "test_p50_p90_max": [round(float(v), 4) for v in np.nanpercentile(e, [50, 90, 100])],
        "test_inner_median": round(float(np.nanmedian(e[:, 17:])), 5),
        "shipped_table": {
            "test_within_2pct_contour": round(float(np.mean(ec[:, :17] < 0.02)), 3),
            "test_within_2pct_inner": round(float(np.mean(ec[:, 17:] < 0.02)), 3),
            "test_inner_median": round(float(np.nanmedian(ec[:, 17:])), 5),
            "test_p50_p90_max": [round(float(v), 4) for v in np.nanpercentile(ec, [50, 90, 100])]},
    }, indent=1))
    if a.write:
        out = resources_dir() / f"landmarks_{a.name}_to_ibug.json"
        seeds = f"{min(a.train_seeds)}-{max(a.train_seeds)}"
        if a.scenarios:
            seeds += f" of the benchmark world, scenarios {', '.join(a.scenarios)}"
        if a.mouth:
            seeds += f", the {len(train)} whose mouth MediaPipe reads {a.mouth}"
        if a.rows:
            seeds += (f"; only iBUG {a.rows[0]}-{a.rows[1]} fitted there, the other rows are "
                      "the main table's")
        write_index_table(out, table, a.name, DESCRIPTION.format(
            support=a.support, ridge=a.ridge, n=len(train), seeds=seeds))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
