"""Side by side on one GPU: the seed's fitting loop and ``reflame fit`` on the same heads.

    python benchmarks/bench_vs_seed.py --work /tmp/vs --json results.json
    python benchmarks/bench_vs_seed.py --seeds 1001 1002 --repo before=../main   # + another tree

Each head is a synthetic one (``make_world_head``, scenario ``base`` unless --scenario, scored
seeds 1001.. unless --seeds, 20k vertices) written in the case layout the seed loop's
docstring documents: ``scan.obj`` (+ MTL, PNG), ``gt_vertices.npy`` (the 5023 true FLAME
vertices, scan frame) and ``meta.json`` (``R``, ``t``, ``scale`` with
``scan = scale * canonical @ R.T + t``), plus ``landmarks.json``, the 68 true landmarks.

Then, in fresh processes on this machine:

- ``seed_loop.py`` (never copied here: its path is an argument, default
  ``../shared/bench/seed_loop.py``) with its defaults (oracle rigid alignment, true landmarks,
  oracle dense UVs);
- ``reflame fit SCAN --preset default --landmarks landmarks.json`` (every stage, texture
  included, all outputs written), for this checkout and every ``--repo LABEL=DIR``.

Reported per head and run: end-to-end wall time of the process (start-up, reading, writing
included; ours also split into interpreter start, imports, load, fit, write and exit), the
seconds in the stages (the seed: geometry + texture loops; ours: the sum of report.json's
stages), steps used, peak GPU memory, and the mean vertex error in % of the head height (y
extent of the true vertices in the canonical frame, as the seed loop measures it; also without
the eyeballs, vertices 3931+). Then the means and the ratios seed / ours.
Prints JSON (and writes it to --json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# FLAME's first 3931 vertices are the head; the rest are the two eyeballs.
HEAD_VERTICES = 3931

# `reflame fit` without the installed entry point (a source checkout on a lent machine).
# It also writes, to $BENCH_TIMES, when the interpreter reached it and what fit_scan took,
# so that the process's wall time splits into start-up, load, stages, writing and exit.
FIT_RUNNER = """\
import time
T0 = time.time()
import argparse, json, os, sys
import reflame_core.fit.run as run
_fit_scan = run.fit_scan
def fit_scan(*args, **kwargs):
    t = time.time()
    result = _fit_scan(*args, **kwargs)
    with open(os.environ["BENCH_TIMES"], "w") as f:
        json.dump({"runner_start": T0, "fit_scan_start": t, "fit_scan_end": time.time(),
                   **result.timings}, f)
    return result
run.fit_scan = fit_scan
from reflame_core.cli import join_axis_values
from reflame_core.errors import ReflameError
from reflame_core.fit import cli
parser = argparse.ArgumentParser(prog="reflame")
cli.add_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(join_axis_values(sys.argv[1:]))
try:
    sys.exit(int(args.handler(args) or 0))
except ReflameError as exc:
    print(f"reflame fit: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def default_data() -> Path:
    return Path(os.environ.get("REFLAME_TEST_DATA", REPO.parent / "shared" / "data"))


def write_case(data: Path, scenario: str, seed: int, vertices: int, folder: Path) -> dict:
    """Write one head in the seed loop's case layout; returns its truth for scoring."""
    from PIL import Image

    from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
    from reflame_core.landmarks.landmark_json import save_landmarks
    from reflame_core.synthetic.head import write_synthetic_head
    from reflame_core.synthetic.world import make_world_head

    template = load_flame_template(data / "flame")
    embedding = load_landmark_embedding(data / "flame")
    texture = np.asarray(Image.open(data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_world_head(template, texture, embedding, scenario, seed,
                           target_vertices=vertices)
    folder.mkdir(parents=True, exist_ok=True)
    write_synthetic_head(head, folder)
    (folder / "truth.npz").unlink()  # the case holds one truth, the seed loop's
    np.save(folder / "gt_vertices.npy", head.true_vertices)
    to_scan = head.to_canonical.inverse()
    meta = {"R": to_scan.rotation.tolist(), "t": to_scan.translation.tolist(),
            "scale": to_scan.scale, "seed": seed, "scenario": scenario}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    save_landmarks(folder / "landmarks.json", head.true_landmark_set(), head.scan.vertices,
                   head.scan.faces)
    canonical = head.to_canonical.apply(head.true_vertices)
    return {"true_vertices": head.true_vertices, "to_canonical": head.to_canonical,
            "height": float(np.ptp(canonical[:, 1])),
            "scan_vertices": int(len(head.scan.vertices))}


def vertex_error(fitted_scan_frame: np.ndarray, truth: dict) -> dict:
    """Mean / p95 vertex error in % of head height, all vertices and without the eyeballs."""
    e = np.linalg.norm(fitted_scan_frame - truth["true_vertices"], axis=1)
    e = 100 * e * truth["to_canonical"].scale / truth["height"]
    return {"mean_err_pct": float(e.mean()), "p95_err_pct": float(np.percentile(e, 95)),
            "mean_err_pct_no_eyeballs": float(e[:HEAD_VERTICES].mean())}


def run_seed(seed_loop: Path, case: Path, flame: Path, extra: list[str]) -> dict:
    out = case / "seed.json"
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(seed_loop), "--case", str(case), "--flame", str(flame),
         "--json", str(out), *extra],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"seed loop failed on {case}:\n{proc.stderr[-3000:]}")
    r = json.loads(out.read_text())
    return {
        "wall_s": wall,
        "stages_s": r["total_s"],
        "geometry_s": r["geometry_s"],
        "texture_s": r["texture_s"],
        "setup_s": r["setup_s"],
        "steps": r["steps"],
        "ms_per_geometry_iter": r["ms_per_geometry_iter"],
        "peak_gpu_memory_gb": r["peak_mem_gb"],
        "mean_err_pct": r["mean_err_pct"],
        "p95_err_pct": r["p95_err_pct"],
        "mean_err_pct_no_eyeballs": r["mean_err_pct_no_eyeballs"],
        "gpu": r["gpu"],
        "torch": r["torch"],
    }


def run_ours(tree: Path, case: Path, flame: Path, truth: dict, preset: str, device: str,
             overrides: list[str], label: str) -> dict:
    from reflame_core.io.obj import read_obj

    out = case / f"fit_{label}"
    cmd = [sys.executable, "-c", FIT_RUNNER, "fit", str(case / "scan.obj"), "--out", str(out),
           "--preset", preset, "--landmarks", str(case / "landmarks.json"), "--flame-dir",
           str(flame), "--device", device, "--quiet"]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tree), *os.environ.get("PYTHONPATH", "").split(os.pathsep)])}
    times_path = case / f"times_{label}.json"
    env["BENCH_TIMES"] = str(times_path)
    t, t_epoch = time.perf_counter(), time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    wall = time.perf_counter() - t
    t_exit = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"reflame fit ({label}) failed on {case}:\n{proc.stderr[-3000:]}")
    times = json.loads(times_path.read_text())
    phases = {
        "interpreter_start": times["runner_start"] - t_epoch,
        "imports_and_cli": times["fit_scan_start"] - times["runner_start"],
        # fit_scan's own imports (torch among them) precede its clock
        "imports_in_fit_scan": times["fit_scan_end"] - times["fit_scan_start"] - times["total"],
        "load": times["load"],  # scan, FLAME, landmarks, session (incl. renderer)
        "fit": times["fit"],  # the stages and the steps between them
        "write": times["write"],
        "exit": t_exit - times["fit_scan_end"],
    }
    report = json.loads((out / "report.json").read_text())
    stages = {
        name: {k: s.get(k) for k in ("status", "iterations", "seconds", "end_reason")
               if k in s}
        for name, s in report["stages"].items()
    }
    fitted = read_obj(out / "fit.obj").vertices
    peak = report.get("peak_gpu_memory_bytes")
    return {
        "wall_s": wall,
        "wall_phases_s": phases,
        "stages_s": sum(s["seconds"] for s in report["stages"].values()),
        "stages": stages,
        "steps": {n: s["iterations"] for n, s in report["stages"].items()},
        "peak_gpu_memory_gb": None if peak is None else peak / 1e9,
        **vertex_error(np.asarray(fitted, np.float64), truth),
    }


def summarise(heads: list[dict], labels: list[str]) -> dict:
    def mean(run: str, key: str) -> float:
        return float(np.mean([h[run][key] for h in heads]))

    keys = ("wall_s", "stages_s", "mean_err_pct", "mean_err_pct_no_eyeballs", "p95_err_pct")
    out = {run: {k: mean(run, k) for k in keys} for run in ["seed", *labels]}
    for label in labels:
        out[label]["speedup_vs_seed_stages"] = out["seed"]["stages_s"] / out[label]["stages_s"]
        out[label]["speedup_vs_seed_wall"] = out["seed"]["wall_s"] / out[label]["wall_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed-loop", type=Path, default=REPO.parent / "shared" / "bench" /
                    "seed_loop.py")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--seeds", type=int, nargs="+", default=[1001, 1002])
    ap.add_argument("--scenario", default="base")
    ap.add_argument("--scan-vertices", type=int, default=20000)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for our fit, as `reflame fit --set`")
    ap.add_argument("--repo", action="append", default=[], metavar="LABEL=DIR",
                    help="also fit with the reflame checkout in DIR (e.g. the code before)")
    ap.add_argument("--seed-args", default="", help="extra arguments for seed_loop.py")
    ap.add_argument("--no-seed", action="store_true", help="skip the seed loop")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_vs_seed"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.no_seed and not args.seed_loop.is_file():
        ap.error(f"--seed-loop {args.seed_loop}: no such file")
    trees = {"ours": REPO}
    for spec in args.repo:
        label, _, folder = spec.partition("=")
        trees[label] = Path(folder).resolve()
    flame = args.data / "flame"
    heads = []
    for seed in args.seeds:
        case = args.work / f"head_{seed}"
        truth = write_case(args.data, args.scenario, seed, args.scan_vertices, case)
        head = {"head_seed": seed, "scan_vertices": truth["scan_vertices"]}
        if not args.no_seed:
            head["seed"] = run_seed(args.seed_loop, case, flame, args.seed_args.split())
        for label, tree in trees.items():
            head[label] = run_ours(tree, case, flame, truth, args.preset, args.device,
                                   args.overrides, label)
        print(json.dumps(head), file=sys.stderr, flush=True)
        heads.append(head)
    result = {
        "scenario": args.scenario,
        "seeds": args.seeds,
        "preset": args.preset,
        "overrides": args.overrides,
        "repos": {k: str(v) for k, v in trees.items()},
        "heads": heads,
    }
    if not args.no_seed:
        result["summary"] = summarise(heads, list(trees))
    try:
        import torch

        result["torch"] = torch.__version__
        result["cuda"] = torch.version.cuda
        result["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        pass
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
