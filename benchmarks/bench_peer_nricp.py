"""A peer: trimesh's non-rigid ICP (Amberg et al. 2007) on the heads of bench_fit_world; JSON.

    PYTHONPATH=. python benchmarks/bench_peer_nricp.py --seeds 2001 --scenarios base rotation

Same heads, landmarks and scoring as ``bench_fit_world.py`` (true landmarks, or 10% of them
moved 10% of head height away; errors / head height per region). The FLAME template is
started from our own alignment (``--start rigid``: the rigid stage, a similarity from the
landmarks; ``--start affine``: rigid + the per-axis affine stage) and then registered to the
scan by ``trimesh.registration.nricp_amberg`` with the FLAME landmark embedding as its
source landmarks and the landmarks as targets, trimesh's default schedule of steps, against
20000 points sampled on the scan. Its
eyeballs are registered like any other vertex (it has no eyeball model). Seconds are the
NRICP's own (CPU, single process), not the alignment's.
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
import trimesh
from bench_fit_world import landmark_points

from reflame_core.fit.config import FitConfig
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets, sample_surface
from reflame_core.synthetic.scoring import summarize_vertices, vertex_errors
from reflame_core.synthetic.world import SCENARIOS, load_world_assets, make_world_head

# Distances in the canonical frame (head about 3.2 units tall); trimesh's default is 0.1.
DISTANCE_THRESHOLD = 0.1
# Scan points NRICP matches against (our coarse stage uses 8000 in preset fast, 20000 in
# default).
TARGET_SAMPLES = 20000


def aligned_session(head, points, template, embedding, start: str) -> FitSession:
    """A session that has run the rigid (and, for ``start='affine'``, the affine) stage."""
    config = FitConfig.load(preset="fast", overrides={
        "stages.affine.enabled": start == "affine", "stages.coarse.enabled": False,
        "stages.refine.enabled": False, "stages.eyeballs.enabled": False,
        "stages.texture.enabled": False})
    session = FitSession(head.scan, template, embedding, LandmarkTargets.from_points(points),
                         config, render_backend="torch")
    session.run()
    return session


def nricp(session: FitSession, points: np.ndarray, embedding) -> tuple[np.ndarray, float]:
    """NRICP of the aligned template onto the scan (canonical frame); fitted vertices in the
    scan frame and the seconds NRICP took."""
    source = trimesh.Trimesh(session.vertices.cpu().numpy().astype(np.float64),
                             session.template.faces, process=False)
    scan = session.scan_canonical
    # A dense point sample of the scan (trimesh's closest-point-on-mesh query needs rtree,
    # which the project does not depend on); normals are estimated from the points.
    target, _ = sample_surface(scan.vertices, scan.faces, TARGET_SAMPLES)
    landmarks = (np.asarray(embedding.face_idx), np.asarray(embedding.bary, np.float64))
    goal = session.to_canonical.apply(np.asarray(points, np.float64))
    t = time.perf_counter()
    fitted = trimesh.registration.nricp_amberg(
        source, target, source_landmarks=landmarks, target_positions=goal,
        distance_threshold=DISTANCE_THRESHOLD, use_faces=False)
    seconds = time.perf_counter() - t
    return session.to_canonical.inverse().apply(np.asarray(fitted, np.float64)), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=["base"])
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--scan-vertices", type=int, default=4000)
    ap.add_argument("--landmarks", choices=("true", "displaced"), default="true")
    ap.add_argument("--start", choices=("rigid", "affine"), nargs="+", default=["affine"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "REFLAME_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    world = load_world_assets(a.data)
    template, embedding, texture, labels = (world.template, world.embedding, world.texture,
                                            world.labels)

    rows = []
    for scenario in a.scenarios:
        for seed in a.seeds:
            head = make_world_head(template, texture, embedding, scenario, seed,
                                   target_vertices=a.scan_vertices)
            points = landmark_points(head, a.landmarks, seed)
            for start in a.start:
                session = aligned_session(head, points, template, embedding, start)
                fitted, seconds = nricp(session, points, embedding)
                f = summarize_vertices(vertex_errors(head, fitted), head.vertex_present, labels)
                rows.append({"scenario": scenario, "seed": seed, "start": start,
                             "seconds": round(seconds, 1), "final": f})
                print(f"{scenario} {seed} nricp/{start}: all {f['mean']:.4f}/{f['p95']:.4f} "
                      f"face {f['face']['mean']:.4f} eyes {f['eyeballs']['mean']:.4f} rest "
                      f"{f['scalp_ears_neck']['mean']:.4f}/{f['scalp_ears_neck']['p95']:.4f} "
                      f"{seconds:.1f}s", file=sys.stderr, flush=True)
    json.dump({"peer": f"trimesh {trimesh.__version__} registration.nricp_amberg",
               "scenarios": a.scenarios, "seeds": a.seeds, "landmarks": a.landmarks,
               "scan_vertices": a.scan_vertices, "distance_threshold": DISTANCE_THRESHOLD,
               "target_samples": TARGET_SAMPLES,
               "machine": platform.processor() or platform.machine(), "torch_threads": a.threads,
               "heads": rows}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
