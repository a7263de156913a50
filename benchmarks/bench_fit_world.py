"""Fit accuracy by region on the benchmark world with known landmarks; prints JSON.

    PYTHONPATH=. python benchmarks/bench_fit_world.py --seeds 2001 --scenarios base rotation
    PYTHONPATH=. python benchmarks/bench_fit_world.py --seeds 2001 --landmarks displaced \
        --variant plain:stages.coarse.w_arap=0 --variant arap:stages.coarse.w_arap=1

This isolates the fit from landmark detection (``bench_accuracy.py`` measures them together):
the landmarks are the head's true ones, or (``--landmarks displaced``) the true ones with 10% of
them moved 10% of head height away (``synthetic/wrong_landmarks.py``). Each ``--variant
NAME:KEY=VALUE,KEY=VALUE`` fits every head once more with those config overrides on top of
``--set``; heads are built once and shared. Errors are distance / head height
(``synthetic/scoring.py``) per region: face, eyeballs, scalp+ears+neck, after each stage.
Tune on TUNING_SEEDS (2001-2100); report SCORED_SEEDS (1001-1100).
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

from reflame_core.fit.config import FitConfig, parse_override
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.synthetic.scoring import summarize_vertices, vertex_errors
from reflame_core.synthetic.world import SCENARIOS, load_world_assets, make_world_head
from reflame_core.synthetic.wrong_landmarks import displaced_landmarks

# Stages after which the fit is scored (when they run).
SCORED_STAGES = ("affine", "coarse", "refine", "eyeballs")


def landmark_points(head, kind: str, seed: int) -> np.ndarray:
    """(68,3) landmark targets in the scan frame: the truth, or 10% moved 10% away."""
    if kind == "true":
        return np.asarray(head.true_landmarks, np.float64)
    points, _ = displaced_landmarks(head, 0.1, 0.1, np.random.default_rng(seed))
    return points


def fit_head(head, points, template, embedding, config, device, labels) -> dict:
    """Run the whole fit; region errors after each scored stage and the seconds it took."""
    session = FitSession(head.scan, template, embedding, LandmarkTargets.from_points(points),
                         config, device=device)
    after: dict[str, dict] = {}
    t = time.perf_counter()
    while not session.done:
        name = session.current.name
        session.step()
        if name in SCORED_STAGES and (session.done or session.current.name != name):
            e = vertex_errors(head, session.vertices_in_scan_frame())
            after[name] = summarize_vertices(e, head.vertex_present, labels)
    return {"seconds": round(time.perf_counter() - t, 1), "after": after,
            "final": after[list(after)[-1]] if after else None}


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    return name, dict(parse_override(o) for o in rest.split(",") if o)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=["base"])
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--scan-vertices", type=int, default=4000)
    ap.add_argument("--landmarks", choices=("true", "displaced"), default="true")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "REFLAME_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    world = load_world_assets(a.data)
    template, embedding, texture, labels = (world.template, world.embedding, world.texture,
                                            world.labels)
    base = {**dict(parse_override(o) for o in a.overrides), "stages.texture.enabled": False}
    variants = dict(parse_variant(v) for v in a.variant) or {"as_is": {}}

    rows = []
    for scenario in a.scenarios:
        for seed in a.seeds:
            head = make_world_head(template, texture, embedding, scenario, seed,
                                   target_vertices=a.scan_vertices)
            points = landmark_points(head, a.landmarks, seed)
            for name, overrides in variants.items():
                config = FitConfig.load(preset=a.preset, overrides={**base, **overrides})
                r = fit_head(head, points, template, embedding, config, a.device, labels)
                rows.append({"scenario": scenario, "seed": seed, "variant": name, **r})
                f = r["final"]
                print(f"{scenario} {seed} {name}: all {f['mean']:.4f}/"
                      f"{f['p95']:.4f} face {f['face']['mean']:.4f} eyes "
                      f"{f['eyeballs']['mean']:.4f} rest {f['scalp_ears_neck']['mean']:.4f}/"
                      f"{f['scalp_ears_neck']['p95']:.4f} {r['seconds']}s",
                      file=sys.stderr, flush=True)
    summary = {}
    for name in variants:
        finals = [r["final"] for r in rows if r["variant"] == name]
        groups = ("face", "eyeballs", "scalp_ears_neck")
        summary[name] = {"mean": round(float(np.mean([f["mean"] for f in finals])), 5),
                         "p95": round(float(np.mean([f["p95"] for f in finals])), 5),
                         **{g: round(float(np.mean([f[g]["mean"] for f in finals])), 5)
                            for g in groups}}
    json.dump({"scenarios": a.scenarios, "seeds": a.seeds, "landmarks": a.landmarks,
               "preset": a.preset, "device": a.device, "scan_vertices": a.scan_vertices,
               "set": a.overrides, "variants": {k: [f"{a}={b}" for a, b in v.items()]
                                                for k, v in variants.items()},
               "machine": platform.processor() or platform.machine(),
               "summary_mean": summary, "heads": rows}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
