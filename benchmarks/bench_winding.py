"""Scans whose faces are wound the wrong way, through ``fit_scan`` (as ``reflame fit``); JSON.

One world head, written as an OBJ four ways: as generated; mirrored (every face's winding
reversed, as a mirroring export leaves it); a mirrored triangle soup (every face with its own
three vertices); and half its faces reversed at random (a broken remesher). Each is fitted
with detected landmarks, and the fit is scored against the head's truth: mean vertex error /
head height over the vertices still on the scan (``synthetic/scoring.py``). Also printed:
the loader's notes, the landmarks detected, fit->scan, seconds.

    PYTHONPATH=. python benchmarks/bench_winding.py --preset fast --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import reflame_core as rf
from reflame_core.io.obj import read_obj, write_obj
from reflame_core.synthetic.scoring import vertex_errors
from reflame_core.synthetic.world import load_world_assets, make_world_head


def variants(scan, rng: np.random.Generator) -> dict[str, tuple]:
    """name -> (vertices, faces, uv_faces) of each way to write ``scan``."""
    f, uf = scan.faces, scan.uv_faces
    corners = scan.vertices[f].reshape(-1, 3)
    soup = np.arange(len(corners)).reshape(-1, 3)
    half = rng.random(len(f)) < 0.5
    mixed, mixed_uv = f.copy(), uf.copy()
    mixed[half], mixed_uv[half] = f[half][:, ::-1], uf[half][:, ::-1]
    return {
        "as_generated": (scan.vertices, f, uf),
        "mirrored": (scan.vertices, f[:, ::-1], uf[:, ::-1]),
        "mirrored_soup": (corners, soup[:, ::-1], uf[:, ::-1]),
        "half_reversed": (scan.vertices, mixed, mixed_uv),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="rotation")
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--scan-vertices", type=int, default=20000)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data")
    ap.add_argument("--out")
    a = ap.parse_args()
    world = load_world_assets(a.data)
    head = make_world_head(world.template, world.texture, world.embedding, a.scenario, a.seed,
                           target_vertices=a.scan_vertices)
    flame = rf.load_flame(a.data / "flame")
    config = rf.FitConfig.preset(a.preset).with_overrides(["stages.texture.enabled=false"])
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (v, f, uf) in variants(head.scan, np.random.default_rng(0)).items():
            path = write_obj(Path(tmp) / name / "scan.obj", v, f, uv=head.scan.uv, uv_faces=uf,
                             texture=head.scan.texture)
            log: list[str] = []
            t = time.perf_counter()
            result = rf.fit_scan(path, Path(tmp) / name / "fit", config=config,
                                 device=a.device, flame=flame, log=log.append)
            fitted = read_obj(result.paths["fit.obj"]).vertices
            err = vertex_errors(head, fitted)
            rows[name] = {
                "seconds": round(time.perf_counter() - t, 1),
                "scan_notes": result.report.get("scan_notes", []),
                "landmarks": next((m for m in log if m.startswith("landmarks: ")), None),
                "fit_to_scan": result.report["distances_relative_to_scan_size"][
                    "fit_to_scan_mean"],
                "vertex_error_mean": float(np.mean(err[head.vertex_present])),
            }
            print(f"{name}: {100 * rows[name]['vertex_error_mean']:.3f}%", file=sys.stderr)
    doc = {"scenario": a.scenario, "seed": a.seed, "scan_vertices": a.scan_vertices,
           "preset": a.preset, "device": a.device, "variants": rows}
    text = json.dumps(doc, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
