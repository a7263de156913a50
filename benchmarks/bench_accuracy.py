"""Landmark (and optionally fit) accuracy on the benchmark world; prints JSON.

    PYTHONPATH=. python benchmarks/bench_accuracy.py                      # world 'wild'
    PYTHONPATH=. python benchmarks/bench_accuracy.py --world wild-small --scan-vertices 4000
    PYTHONPATH=. python benchmarks/bench_accuracy.py --scenarios base rotation --heads 2
    PYTHONPATH=. python benchmarks/bench_accuracy.py --fit --set stages.refine.steps=20

Heads: for scenario S and head i, the generator's head of seed ``SCORED_SEEDS[i]`` (1001,
1002, ...) under S (``reflame_core/synthetic/world.py``). Every scenario sees the same
underlying heads, so scenarios compare pairwise. Tune on ``TUNING_SEEDS`` (2001-2100), never
on these. Errors and summaries: ``reflame_core/synthetic/scoring.py`` (distance / head height;
truth cut away from the scan is not scored, an unplaced landmark is a miss).

Landmarks come from ``detect_landmarks`` (MediaPipe) as in bench_landmarks.py. ``--fit`` also
fits each head the way ``reflame fit`` does (``detect_or_none`` then ``make_session`` and
``session.run``; preset 'fast' on CPU, texture stage off) and scores the fitted vertices.
Run from the repository root with PYTHONPATH=. so this checkout's reflame_core is used.
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
from reflame_core.fit.regions import REGIONS, region_labels
from reflame_core.fit.setup import FitInputs, detect_or_none, make_session
from reflame_core.landmarks.detect import detect_landmarks
from reflame_core.landmarks.detector import get_detector
from reflame_core.synthetic.scoring import (
    landmark_errors,
    summarize_landmarks,
    summarize_vertices,
    vertex_errors,
)
from reflame_core.synthetic.world import SCENARIOS, SCORED_SEEDS, make_world_head

# Worlds: which scenarios, how many heads each. 'wild' is the scored benchmark.
WORLDS = {
    "wild": (tuple(SCENARIOS), 10),
    "wild-small": (tuple(SCENARIOS), 2),
}


def fit_errors(head, template, embedding, config: FitConfig, log) -> tuple[np.ndarray, bool]:
    """(5023,) relative fit errors, the fit run as ``reflame fit`` runs it, and whether it had
    landmarks (without a usable detection it fits without, as the CLI does)."""
    lms = detect_or_none(head.scan, config, "cpu", log)
    session = make_session(FitInputs(head.scan, template, embedding, lms), config)
    session.run()
    return vertex_errors(head, session.vertices_in_scan_frame()), lms is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", choices=sorted(WORLDS), default="wild")
    ap.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS),
                    help="only these scenarios (default: the world's)")
    ap.add_argument("--heads", type=int, help="heads per scenario (default: the world's)")
    ap.add_argument("--seeds", type=int, nargs="+",
                    help="explicit seeds instead of the first --heads scored seeds")
    ap.add_argument("--scan-vertices", type=int, default=20000)
    ap.add_argument("--fit", action="store_true", help="also fit (slow: minutes per head)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="fit config override, as `reflame fit --set`")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "REFLAME_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    a = ap.parse_args()
    scenarios, heads = WORLDS[a.world]
    scenarios = tuple(a.scenarios or scenarios)
    seeds = list(a.seeds or SCORED_SEEDS[: a.heads or heads])
    torch.set_num_threads(a.threads)

    template = load_flame_template(a.data / "flame")
    embedding = load_landmark_embedding(a.data / "flame")
    texture = np.asarray(Image.open(a.data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    detector = get_detector("mediapipe")
    config = FitConfig.load(preset="fast", overrides={
        **dict(parse_override(o) for o in a.overrides), "stages.texture.enabled": False})
    face = region_labels(template, embedding) == REGIONS.index("face")
    notes: list[str] = []

    results: dict[str, dict] = {}
    all_lm, all_fit, all_present = [], [], []
    for name in scenarios:
        lm, fit, present, seconds, blind = [], [], [], [], 0
        for seed in seeds:
            head = make_world_head(template, texture, embedding, name, seed,
                                   target_vertices=a.scan_vertices)
            t = time.perf_counter()
            lms = detect_landmarks(head.scan, backend=detector)
            seconds.append(round(time.perf_counter() - t, 2))
            lm.append(landmark_errors(head, lms.positions(head.scan.vertices,
                                                          head.scan.faces)[:68]))
            if a.fit:
                e, had_landmarks = fit_errors(
                    head, template, embedding, config,
                    lambda m, s=seed, n=name: notes.append(f"{n} seed {s}: {m}"))
                fit.append(e)
                present.append(head.vertex_present)
                blind += not had_landmarks
        results[name] = {"heads": len(seeds), "detect_seconds": seconds,
                         "landmarks": summarize_landmarks(np.stack(lm))}
        if a.fit:
            results[name]["fit"] = {
                **summarize_vertices(np.stack(fit), np.stack(present), face),
                "fitted_without_landmarks": blind}
        all_lm += lm
        all_fit += fit
        all_present += present
        print(f"{name}: {results[name]['landmarks'].get('within_2pct')}", file=sys.stderr)

    overall = {"landmarks": summarize_landmarks(np.stack(all_lm))}
    if a.fit:
        overall["fit"] = summarize_vertices(np.stack(all_fit), np.stack(all_present), face)
    json.dump({
        "world": a.world, "scenarios": {n: list(SCENARIOS[n]) for n in scenarios},
        "seeds": seeds, "scan_vertices": a.scan_vertices, "fit": a.fit,
        "fit_overrides": a.overrides if a.fit else [],
        "machine": platform.processor() or platform.machine(), "torch_threads": a.threads,
        "overall": overall, "per_scenario": results, "fit_notes": notes,
    }, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
