"""A dense scan through ``reflame fit``, as a user runs it; prints JSON.

Real scanners and photogrammetry write heads of one to several million faces. This takes a
scan, Loop-subdivides it (smooth, so it still looks like the scan: 4x the faces per level),
writes it as a binary PLY and runs the real command on each level, in a fresh process. Per
level: faces, wall seconds, peak memory of the process, the frame it found, the landmarks it
detected, fit->scan, and how far the fitted mesh lies from the first level's fit (% of the
scan's size: the same head should fit the same however finely it is meshed).

    PYTHONPATH=. python benchmarks/bench_dense_scan.py \\
        --scan ../shared/data/scans/lee_perry_smith/LeePerrySmith.glb --levels 0 3 \\
        --preset fast --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

from reflame_core.io.obj import read_obj
from reflame_core.io.scan import load_scan


def run_level(scan_path: Path, level: int, work: Path, args: argparse.Namespace) -> dict:
    scan = load_scan(scan_path)
    v, f = scan.vertices.astype(np.float64), scan.faces
    if level:
        v, f = trimesh.remesh.subdivide_loop(v, f, iterations=level)
    ply = work / f"level{level}.ply"
    trimesh.Trimesh(v, f, process=False).export(ply)
    out = work / f"fit{level}"
    cmd = [sys.executable, "-m", "reflame_core.cli", "fit", str(ply), "--out", str(out),
           "--preset", args.preset, "--device", args.device]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    text = proc.stdout + proc.stderr
    row: dict = {"level": level, "faces": int(len(f)), "returncode": proc.returncode,
                 "seconds": round(seconds, 1),
                 # Largest child so far (ru_maxrss is a maximum, in KiB on Linux).
                 "peak_rss_gib": round(peak / 2**20, 2)}
    frame = re.search(r"^frame: .*$", text, re.M)
    found = re.search(r"landmarks: detected (\d+) of (\d+)", text)
    row["frame"] = frame.group(0) if frame else None
    row["landmarks_detected"] = int(found.group(1)) if found else 0
    if proc.returncode != 0:
        row["error"] = text.strip().splitlines()[-1] if text.strip() else ""
        return row
    report = json.loads((out / "report.json").read_text())
    rel = report["distances_relative_to_scan_size"]
    row["fit_to_scan_mean"] = round(100 * rel["fit_to_scan_mean"], 3)
    row["warnings"] = report["warnings"]
    # reflame's own reader: trimesh splits the FLAME mesh at its UV seams (5150 vertices).
    row["_vertices"] = read_obj(out / "fit.obj").vertices
    row["_size"] = float(np.ptp(v, axis=0).max())
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan", type=Path, required=True)
    ap.add_argument("--levels", type=int, nargs="+", default=[0, 3],
                    help="Loop subdivision levels to run (0: the scan as it is)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in args.levels:
            row = run_level(args.scan, level, Path(tmp), args)
            if "_vertices" in row and rows and "_vertices" in rows[0]:
                apart = np.linalg.norm(row["_vertices"] - rows[0]["_vertices"], axis=1)
                row["fit_apart_from_first_mean"] = round(100 * apart.mean() / row["_size"], 3)
                row["fit_apart_from_first_p95"] = round(
                    100 * float(np.percentile(apart, 95)) / row["_size"], 3)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}),
                  file=sys.stderr, flush=True)
    print(json.dumps({"scan": str(args.scan), "preset": args.preset, "device": args.device,
                      "units": "fit_to_scan and fit_apart in % of the scan's size",
                      "levels": [{k: v for k, v in r.items() if not k.startswith("_")}
                                 for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
