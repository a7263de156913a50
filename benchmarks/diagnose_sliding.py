"""Where a fit's vertex error comes from: across or along the surface, and at which stage.

For each world head (``synthetic/world.py``), fits it twice, with the landmarks ``reflame fit``
detects and with the true ones, and prints JSON: per stage and region, the mean error split
into its part along the true surface normal (``normal``: the surface is not matched) and
the rest (``along``: the surface is matched but the vertices slid), and how far the two fits
lie apart after each stage (what the detected landmarks' errors alone did).

    PYTHONPATH=. python benchmarks/diagnose_sliding.py --scenarios shape --seeds 2001 2002

Errors are % of head height, over all 5023 vertices (cut-away ones included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import trimesh

from reflame_core.fit.config import FitConfig, parse_override
from reflame_core.fit.regions import REGIONS, region_labels
from reflame_core.fit.setup import FitInputs, detect_or_none, make_session
from reflame_core.synthetic.truth import head_height
from reflame_core.synthetic.world import load_world_assets, make_world_head


def fit_by_stage(head, world, landmarks, config) -> dict[str, np.ndarray]:
    """Fitted vertices (5023,3), scan frame, after each stage."""
    session = make_session(FitInputs(head.scan, world.template, world.embedding, landmarks),
                           config, device="cpu")
    out, stage = {}, session.current.name
    while not session.done:
        session.step()
        now = session.current.name if session.current else None
        if now != stage:
            out[stage], stage = session.vertices_in_scan_frame(), now
    return out


def split(errors: np.ndarray, normals: np.ndarray, labels: np.ndarray, height: float) -> dict:
    """Mean |normal part| and |along part| of errors (5023,3) per region, % of height."""
    normal = (errors * normals).sum(1)
    along = np.linalg.norm(errors - normal[:, None] * normals, axis=1)
    out = {"all": round(100 * float(np.linalg.norm(errors, axis=1).mean()) / height, 3)}
    for i, name in enumerate(REGIONS):
        k = labels == i
        out[name] = {"normal": round(100 * float(np.abs(normal[k]).mean()) / height, 3),
                     "along": round(100 * float(along[k].mean()) / height, 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["shape"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[2001])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--scan-vertices", type=int, default=4000)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    world = load_world_assets(args.data)
    labels = region_labels(world.template, world.embedding)
    config = FitConfig.load(preset=args.preset, overrides={
        "stages.texture.enabled": False, **dict(parse_override(o) for o in args.overrides)})
    rows = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            head = make_world_head(world.template, world.texture, world.embedding, scenario,
                                   seed, target_vertices=args.scan_vertices)
            height = head_height(head)
            normals = trimesh.Trimesh(head.true_vertices, world.template.faces,
                                      process=False).vertex_normals
            detected = detect_or_none(head.scan, config, "cpu", lambda _m: None)
            fits = {"detected": fit_by_stage(head, world, detected, config),
                    "true": fit_by_stage(head, world, head.true_landmark_set(), config)}
            row = {"scenario": scenario, "seed": seed, "stages": {}}
            for stage in fits["true"]:
                apart = np.linalg.norm(fits["detected"][stage] - fits["true"][stage], axis=1)
                row["stages"][stage] = {
                    **{k: split(v[stage] - head.true_vertices, normals, labels, height)
                       for k, v in fits.items()},
                    "detected_vs_true_apart": {
                        name: round(100 * float(apart[labels == i].mean()) / height, 3)
                        for i, name in enumerate(REGIONS)}}
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
