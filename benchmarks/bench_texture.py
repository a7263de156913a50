"""Texture bake timing and accuracy on a synthetic head; prints JSON.

Bake time at 512², 1024² and 2048² for both methods (CPU, and CUDA-free: the bake is numpy/torch
CPU code), and PSNR against the known FLAME-UV texture over valid texels, for a perfect fit
(true vertices) and one off along the normals by ~0.3% of the head height.
Run from the repository root (``-m`` so this checkout's ``reflame_core`` is the one imported):

    python -m benchmarks.bench_texture [--seed 0] [--data ../shared/data] > results.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.mesh import vertex_normals
from reflame_core.synthetic.head import make_synthetic_head
from reflame_core.texture.bake import bake_texture, flame_uv_raster


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[mask]
    return float(10 * np.log10(255.0**2 / np.mean(d**2)))


def normal_offset(faces: np.ndarray, vertices: np.ndarray, fraction: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    height = float(np.ptp(vertices[:, 1]))
    dirs = rng.normal(size=(6, 3))
    x = vertices / height
    field = sum(np.sin(3 * x @ d + p) for d, p in zip(dirs, rng.uniform(0, 6.3, 6), strict=True))
    offset = fraction * height * field / np.sqrt(3)
    return (vertices + offset[:, None] * vertex_normals(vertices, faces)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("REFLAME_TEST_DATA", default)))
    ap.add_argument("--seed", type=int, default=0, help="synthetic head seed")
    args = ap.parse_args()
    template = load_flame_template(args.data / "flame")
    texmap = np.asarray(Image.open(args.data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(template, texmap, load_landmark_embedding(args.data / "flame"),
                               seed=args.seed)
    fits = {
        "true": head.true_vertices.astype(np.float32),
        "normal_offset_0.3pct": normal_offset(template.faces, head.true_vertices, 0.003),
    }
    t0 = time.perf_counter()
    query = MeshQuery(head.scan.vertices, head.scan.faces)
    result: dict = {
        "seed": args.seed,
        "scan_vertices": int(len(head.scan.vertices)),
        "scan_faces": int(len(head.scan.faces)),
        "cpu_threads": torch.get_num_threads(),
        # Other jobs on a shared machine stretch the wall times: say how busy it was.
        "load_average_1m_at_start": os.getloadavg()[0],
        "index_build_s": round(time.perf_counter() - t0, 3),
        "runs": [],
    }
    for res in (512, 1024, 2048):
        t0 = time.perf_counter()
        flame_uv_raster(template, res)
        raster_s = time.perf_counter() - t0
        truth = cv2.resize(head.texture_truth, (res, res), interpolation=cv2.INTER_AREA)
        for fit_name, verts in fits.items():
            for method in ("normal_ray", "closest"):
                t0 = time.perf_counter()
                bake = bake_texture(verts, template, head.scan, resolution=res, method=method,
                                    query=query)
                result["runs"].append({
                    "resolution": res,
                    "fit": fit_name,
                    "method": method,
                    "uv_raster_s_first_call": round(raster_s, 3),
                    "bake_s": round(time.perf_counter() - t0, 3),
                    "valid_fraction": round(float(bake.valid.mean()), 4),
                    "psnr_valid_db": round(psnr(bake.texture, truth, bake.valid), 2),
                })
    result["load_average_1m_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
