"""GPU check of the render backends: build nvdiffrast, parity nvdiffrast vs torch backend on
the FLAME template, then the rendering benchmark. Prints JSON and writes it to
``<--out>/gpu_render.json`` (default $OUT, else the current folder). Run on a CUDA machine,
from the repository root (as a module: it imports ``benchmarks.bench_render``):

    REFLAME_TEST_DATA=<data> python -m benchmarks.gpu_render_check --out <folder> [--repeats 5]

Without CUDA the parity entries hold the error and only the CPU rows of the benchmark run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_render import flame_dir, load_template, run
from reflame_core.render.backends import get_backend
from reflame_core.render.backends.nvdiffrast_backend import load_nvdiffrast
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer


def parity(template: dict, views: int, res: int) -> dict:
    """Compare nvdiffrast and the torch backend (both on CUDA) on the FLAME template."""
    dev = torch.device("cuda")
    cams = OrbitCameras(num_views=views, resolution=res)
    faces = torch.as_tensor(template["faces"], device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    weight = torch.rand(views, res, res, 1, device=dev, generator=gen)
    outs, verts = {}, {}
    for name in ("nvdiffrast", "torch"):
        renderer = MeshRenderer(cams, name, dev)
        v = torch.tensor(template["vertices"], dtype=torch.float32, device=dev, requires_grad=True)
        outs[name], verts[name] = renderer.render(v, faces), v
    a, b = outs["nvdiffrast"], outs["torch"]
    same_tri_px = (a.tri_id == b.tri_id)[..., None].float()
    grads = {}
    for name in ("nvdiffrast", "torch"):
        out, v = outs[name], verts[name]
        grads[name] = [
            torch.autograd.grad((out.depth * w).sum(), v, retain_graph=True)[0]
            for w in (weight, weight * same_tri_px)
        ] + [torch.autograd.grad((out.mask * weight).sum(), v)[0]]
    ca, cb = a.tri_id >= 0, b.tri_id >= 0
    iou = ((ca & cb).sum() / (ca | cb).sum()).item()
    both = ca & cb
    da, db = a.depth[..., 0][both], b.depth[..., 0][both]
    rel = ((da - db).abs() / da).detach().cpu().numpy()
    same_tri = (a.tri_id == b.tri_id)[both].float().mean().item()
    diff = (grads["nvdiffrast"][0] - grads["torch"][0]).norm(dim=1)
    worst = torch.topk(diff, 5).indices
    def cos(x: torch.Tensor, y: torch.Tensor) -> float:
        return torch.nn.functional.cosine_similarity(x.flatten(), y.flatten(), dim=0).item()

    return {
        "views": views, "resolution": res, "mask_iou": iou, "same_triangle_frac": same_tri,
        "depth_rel_diff_mean": float(rel.mean()),
        "depth_rel_diff_p99": float(np.quantile(rel, 0.99)),
        "depth_rel_diff_max": float(rel.max()),
        "aa_mask_sum": [a.mask.sum().item(), b.mask.sum().item()],
        "grad_cos_depth_loss": cos(grads["nvdiffrast"][0], grads["torch"][0]),
        "grad_cos_depth_loss_same_tri_pixels": cos(grads["nvdiffrast"][1], grads["torch"][1]),
        "depth_grad_worst_vertices": worst.tolist(),
        "depth_grad_worst_norms": [grads["nvdiffrast"][0][worst].norm(dim=1).tolist(),
                                   grads["torch"][0][worst].norm(dim=1).tolist()],
        "depth_grad_norm_median": grads["nvdiffrast"][0].norm(dim=1).median().item(),
        "grad_cos_mask_loss": cos(grads["nvdiffrast"][2], grads["torch"][2]),
        "grad_norm_ratio_mask_loss": (
            grads["torch"][2].norm() / grads["nvdiffrast"][2].norm()
        ).item(),
        "pass": bool(iou >= 0.99 and np.quantile(rel, 0.99) <= 1e-3
                     and cos(grads["nvdiffrast"][0], grads["torch"][0]) >= 0.9),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    report: dict = {"torch": torch.__version__, "cuda": torch.version.cuda,
                    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    try:
        report["nvcc"] = subprocess.run(["nvcc", "--version"], capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1]
    except OSError as exc:
        report["nvcc"] = f"missing: {exc}"
    t0 = time.perf_counter()
    try:
        load_nvdiffrast()
        report["nvdiffrast_load_s"] = time.perf_counter() - t0
        report["auto_backend"] = get_backend("auto", "cuda").name
    except Exception:
        report["nvdiffrast_error"] = traceback.format_exc()
    template = load_template(flame_dir())
    report["parity"] = []
    for views, res in ((8, 256), (40, 448)):
        try:
            report["parity"].append(parity(template, views, res))
        except Exception:
            report["parity"].append({"views": views, "error": traceback.format_exc()})
    torch.set_num_threads(2)
    try:
        report["bench"] = run([(8, 128), (40, 448)], args.repeats)
    except Exception:
        report["bench_error"] = traceback.format_exc()
    text = json.dumps(report, indent=1)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_render.json").write_text(text)


if __name__ == "__main__":
    main()
