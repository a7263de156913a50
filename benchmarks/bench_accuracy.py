"""Landmark (and optionally fit) accuracy on the benchmark world; prints JSON.

    PYTHONPATH=. python benchmarks/bench_accuracy.py                      # world 'wild'
    PYTHONPATH=. python benchmarks/bench_accuracy.py --world wild-small --scan-vertices 4000
    PYTHONPATH=. python benchmarks/bench_accuracy.py --scenarios base rotation --heads 2
    PYTHONPATH=. python benchmarks/bench_accuracy.py --fit --set stages.refine.steps=20
    PYTHONPATH=. python benchmarks/bench_accuracy.py --fit --preset default --device cuda \
        --jobs 8 --out results.json                      # a GPU machine: 8 heads at a time

Heads: for scenario S and head i, the generator's head of seed ``SCORED_SEEDS[i]`` (1001,
1002, ...) under S (``reflame_core/synthetic/world.py``). Every scenario sees the same
underlying heads, so scenarios compare pairwise. Tune on ``TUNING_SEEDS`` (2001-2100), never
on these. Errors and summaries: ``reflame_core/synthetic/scoring.py`` (distance / head height;
truth cut away from the scan is not scored, an unplaced landmark is a miss).

Landmarks come from ``detected_inputs`` exactly as ``reflame fit`` gets them: the frame
found from the face, then detection in it (a detection the fit would reject scores as all
missed). ``--fit`` then fits each head the way ``reflame fit`` does (``make_session`` and
``session.run``; texture stage off) with those landmarks, or with the true ones
(``--landmarks true``: the fit alone, detection taken out; the frame read off them, as
``reflame fit --landmarks`` reads it; they count as detections of confidence 1, which the
robust kernel may discount; ``--landmarks edited``: the same points as an artist's, marked
edited in the studio, which it never discounts), and scores the fitted vertices per region and the
landmarks the fit writes (FLAME's landmarks on the fitted mesh, ``landmarks_after_fit``;
snapped onto the scan as ``reflame landmarks --refine`` writes them,
``landmarks_after_fit_on_scan``). ``--jobs N`` runs N heads at a time in worker processes;
with ``--device cuda`` and several GPUs, heads are dealt round-robin to the GPUs.
Run from the repository root with PYTHONPATH=. so this checkout's reflame_core is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from reflame_core.fit.config import FitConfig, parse_override
from reflame_core.fit.setup import (
    FitInputs,
    FlameAssets,
    detected_inputs,
    make_session,
    scan_frame,
)
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.synthetic.scoring import (
    NOT_PLACED,
    landmark_errors,
    summarize_landmarks,
    summarize_vertices,
    vertex_errors,
)
from reflame_core.synthetic.world import (
    SCENARIOS,
    SCORED_SEEDS,
    load_world_assets,
    make_world_head,
)

# Worlds: which scenarios, how many heads each. 'wild' is the scored benchmark.
WORLDS = {
    "wild": (tuple(SCENARIOS), 10),
    "wild-small": (tuple(SCENARIOS), 2),
}

# What a worker process loads once (FLAME, the texture, the fit config) and its settings.
_CONTEXT: dict = {}


def _load_context(data: Path, preset: str, overrides: list[str], scan_vertices: int,
                  threads: int, fit: bool, landmarks: str) -> None:
    torch.set_num_threads(threads)
    world = load_world_assets(data)
    _CONTEXT.update(
        template=world.template, embedding=world.embedding, scan_vertices=scan_vertices,
        fit=fit, landmarks=landmarks, texture=world.texture,
        config=FitConfig.load(preset=preset, overrides={
            "stages.texture.enabled": False, **dict(parse_override(o) for o in overrides)}))


def score_head(scenario: str, seed: int, device: str) -> dict:
    """One head of the world: detect as ``reflame fit`` does, score, and fit if asked.

    Returns plain lists (pickled back from worker processes): ``landmark_errors`` (68,),
    ``confidence`` (68,), and with ``--fit`` ``vertex_errors`` (5023,) and ``present``."""
    c = _CONTEXT
    head = make_world_head(c["template"], c["texture"], c["embedding"], scenario, seed,
                           target_vertices=c["scan_vertices"])
    notes: list[str] = []
    t = time.perf_counter()
    inputs = detected_inputs(head.scan, FlameAssets(c["template"], c["embedding"]), c["config"],
                             device, notes.append)
    lms = inputs.landmarks
    detect_s = time.perf_counter() - t
    if lms is None:
        errors, confidence = np.full(68, NOT_PLACED), np.zeros(68)
        errors[~head.landmark_present] = np.nan
    else:
        errors = landmark_errors(head, lms.positions(head.scan.vertices, head.scan.faces)[:68])
        confidence = np.asarray(lms.confidence[:68], np.float64)
    out = {"scenario": scenario, "seed": seed, "device": device,
           "detect_seconds": round(detect_s, 2), "detected": lms is not None,
           "landmark_errors": errors.tolist(), "confidence": confidence.tolist(),
           "notes": notes}
    if c["fit"]:
        fit_lms, frame = lms, inputs.to_canonical
        if c["landmarks"] in ("true", "edited"):
            fit_lms = head.true_landmark_set()
            if c["landmarks"] == "edited":
                fit_lms.provenance = ["edited"] * len(fit_lms)
            frame = scan_frame(head.scan, c["config"], device, notes.append, fit_lms)
        t = time.perf_counter()
        session = make_session(FitInputs(head.scan, c["template"], c["embedding"], fit_lms,
                                         frame), c["config"], device=device)
        session.run()
        # What the fit decided on its own that the scores depend on (the jaw's turn).
        notes.extend(e for e in session.events if e.startswith("jaw: turned"))
        fitted = session.landmarks_in_scan_frame()
        out.update(fit_seconds=round(time.perf_counter() - t, 2),
                   fit_with_landmarks=fit_lms is not None,
                   vertex_errors=vertex_errors(head, session.vertices_in_scan_frame()).tolist(),
                   present=head.vertex_present.tolist(),
                   # The landmarks `reflame fit` writes (landmarks.json, fitted_flame_landmarks),
                   # and the same snapped onto the scan (`reflame landmarks --refine`).
                   fitted_landmark_errors=landmark_errors(head, fitted).tolist(),
                   fitted_on_scan_landmark_errors=landmark_errors(
                       head, MeshQuery(head.scan.vertices, head.scan.faces)
                       .closest(fitted).points).tolist())
    scored = errors[~np.isnan(errors)]
    print(f"{scenario} seed {seed}: within 2% {np.mean(scored < 0.02):.3f}"
          + (f", fit mean {np.mean(out['vertex_errors']):.4f}" if c["fit"] else ""),
          file=sys.stderr, flush=True)
    return out


def _devices(device: str) -> list[str]:
    if device != "cuda":
        return [device]
    return [f"cuda:{i}" for i in range(max(1, torch.cuda.device_count()))]


def summarize(heads: list[dict], labels: np.ndarray, fit: bool) -> dict:
    """Landmark (and fit) summaries over ``heads`` (records from ``score_head``)."""
    out = {"heads": len(heads), "detect_seconds": [h["detect_seconds"] for h in heads],
           "landmarks": summarize_landmarks(np.array([h["landmark_errors"] for h in heads]),
                                            np.array([h["confidence"] for h in heads]))}
    if fit:
        out["fit"] = {
            **summarize_vertices(np.array([h["vertex_errors"] for h in heads]),
                                 np.array([h["present"] for h in heads]), labels),
            "fitted_without_landmarks": sum(not h["fit_with_landmarks"] for h in heads),
            "landmarks_after_fit": summarize_landmarks(
                np.array([h["fitted_landmark_errors"] for h in heads])),
            "landmarks_after_fit_on_scan": summarize_landmarks(
                np.array([h["fitted_on_scan_landmark_errors"] for h in heads])),
            "fit_seconds": [h["fit_seconds"] for h in heads]}
    return out


def _json_safe(value):
    """NaN (a landmark cut away from the scan: not scored) as null, so the JSON is strict."""
    if isinstance(value, list):
        return [None if isinstance(x, float) and np.isnan(x) else x for x in value]
    return value


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
    ap.add_argument("--landmarks", choices=("detected", "true", "edited"), default="detected",
                    help="what the fit is given (scoring always scores the detection)")
    ap.add_argument("--preset", default="fast", help="fit preset (fast, default, seed)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (all visible GPUs)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="fit config override, as `reflame fit --set`")
    ap.add_argument("--jobs", type=int, default=1, help="heads at a time (worker processes)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per job")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "REFLAME_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    a = ap.parse_args()
    scenarios, heads = WORLDS[a.world]
    scenarios = tuple(a.scenarios or scenarios)
    seeds = list(a.seeds or SCORED_SEEDS[: a.heads or heads])
    devices = _devices(a.device)
    tasks = [(name, seed, devices[i % len(devices)])
             for i, (name, seed) in enumerate((n, s) for n in scenarios for s in seeds)]
    context = (a.data, a.preset, a.overrides, a.scan_vertices, a.threads, a.fit, a.landmarks)

    # Each head's record is appended to OUT.heads.jsonl as it completes, so a run stopped
    # early (a time limit) still leaves what it scored.
    partial = a.out.with_suffix(".heads.jsonl") if a.out else None
    if partial:
        partial.write_text("")

    def keep(record: dict) -> dict:
        if partial:
            with partial.open("a") as f:
                f.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        return record

    t0 = time.perf_counter()
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn"),
                                 initializer=_load_context, initargs=context) as pool:
            futures = [pool.submit(score_head, *task) for task in tasks]
            records = [keep(f.result()) for f in as_completed(futures)]
    else:
        _load_context(*context)
        records = [keep(score_head(*task)) for task in tasks]
    wall = time.perf_counter() - t0

    labels = load_world_assets(a.data).labels
    per_scenario = {n: summarize([r for r in records if r["scenario"] == n], labels, a.fit)
                    for n in scenarios}
    result = {
        "world": a.world, "scenarios": {n: list(SCENARIOS[n]) for n in scenarios},
        "seeds": seeds, "scan_vertices": a.scan_vertices, "fit": a.fit,
        "fit_landmarks": a.landmarks if a.fit else None, "preset": a.preset,
        "fit_overrides": a.overrides if a.fit else [], "device": a.device,
        "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else None,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "jobs": a.jobs, "torch_threads": a.threads, "wall_seconds": round(wall, 1),
        "overall": summarize(records, labels, a.fit), "per_scenario": per_scenario,
        "notes": {f"{r['scenario']} seed {r['seed']}": r["notes"] for r in records
                  if r["notes"]},
        "heads_raw": [{k: _json_safe(v) for k, v in r.items()
                       if k not in ("vertex_errors", "present")} for r in records],
    }
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
