"""Rendering benchmark: forward+backward time of the FLAME template, printed as JSON.

Per available backend and device: 40 views x 448² and 8 views x 128² (mask + depth + texture
colour, loss on all three, backward to vertices and texture); median of ``--repeats`` runs after
one warm-up, with torch.cuda.synchronize on GPU. FLAME comes from ``--flame`` or
$REFLAME_TEST_DATA/flame (default ../shared/data/flame).

    python benchmarks/bench_render.py [--threads 2] [--repeats 5] [--configs 8x128,40x448]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from reflame_core.render.backends import BackendUnavailableError, get_backend
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer

REPO = Path(__file__).resolve().parent.parent


def flame_dir(cli: str | None = None) -> Path:
    if cli:
        return Path(cli)
    return Path(os.environ.get("REFLAME_TEST_DATA", REPO.parent / "shared" / "data")) / "flame"


def load_template(folder: Path) -> dict[str, np.ndarray]:
    data = np.load(folder / "flame_template.npz")
    return {k: data[k] for k in ("vertices", "faces", "uv", "uv_faces")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_render(template: dict[str, np.ndarray], backend: str, device: str, views: int,
                res: int, repeats: int) -> dict:
    """Median forward / forward+backward seconds for one configuration."""
    dev = torch.device(device)
    renderer = MeshRenderer(OrbitCameras(num_views=views, resolution=res), backend, dev)
    verts = torch.tensor(template["vertices"], dtype=torch.float32, device=dev, requires_grad=True)
    tex = torch.rand(512, 512, 3, device=dev, generator=None, requires_grad=True)
    faces = torch.as_tensor(template["faces"], device=dev)
    fwd, total = [], []
    for it in range(repeats + 1):
        _sync(dev)
        t0 = time.perf_counter()
        out = renderer.render(verts, faces, uv=template["uv"], uv_faces=template["uv_faces"],
                              texture=tex)
        loss = out.mask.mean() + out.depth.mean() + out.color.mean()
        _sync(dev)
        t1 = time.perf_counter()
        loss.backward()
        _sync(dev)
        t2 = time.perf_counter()
        verts.grad = None
        tex.grad = None
        if it > 0:  # the first run warms up caches / kernels
            fwd.append(t1 - t0)
            total.append(t2 - t0)
    return {
        "backend": renderer.backend.name, "device": str(dev), "views": views, "resolution": res,
        "forward_s": statistics.median(fwd), "forward_backward_s": statistics.median(total),
        "repeats": repeats,
    }


def backends_here() -> list[tuple[str, str]]:
    found = [("torch", "cpu")]
    if torch.cuda.is_available():
        found.append(("torch", "cuda"))
        try:
            get_backend("nvdiffrast", "cuda")
            found.append(("nvdiffrast", "cuda"))
        except BackendUnavailableError as exc:
            print(json.dumps({"nvdiffrast_unavailable": str(exc)}))
    return found


def run(configs: list[tuple[int, int]], repeats: int, flame: str | None = None,
        backends: list[tuple[str, str]] | None = None) -> dict:
    template = load_template(flame_dir(flame))
    results = []
    for name, device in backends or backends_here():
        for views, res in configs:
            results.append(time_render(template, name, device, views, res, repeats))
    return {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "results": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--configs", default="8x128,40x448", help="VIEWSxRES,...")
    ap.add_argument("--flame", default=None, help="folder with flame_template.npz")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    print(json.dumps(run(configs, args.repeats, args.flame), indent=1))


if __name__ == "__main__":
    main()
