"""Texture refinement on a synthetic head: seconds per step and PSNR of a refilled hole; JSON.

The bake (true vertices, 512²) loses a disc of cheek texels (radius 0.05 of the texture side),
push-pull fills it as the bake would, then ``TextureRefiner`` runs ``--steps`` iterations in
3 views of 256² (torch backend, CPU). PSNR is against the known FLAME-UV texture: in the
disc (what refinement adds) and over the bake's valid texels (what it must keep).
The same set-up as tests/test_texture_refine.py. Run from the repository root:

    python -m benchmarks.bench_texture_refine [--seed 1] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from benchmarks.bench_texture import psnr
from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer
from reflame_core.synthetic.head import make_synthetic_head
from reflame_core.synthetic.texture_cases import cut_cheek_hole
from reflame_core.texture.bake import bake_texture
from reflame_core.texture.refine import TextureRefiner

RES = 512


def main() -> None:
    ap = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("REFLAME_TEST_DATA", default)))
    ap.add_argument("--seed", type=int, default=1, help="synthetic head seed")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    flame = args.data / "flame"
    template = load_flame_template(flame)
    texmap = np.asarray(Image.open(args.data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(template, texmap, load_landmark_embedding(flame), seed=args.seed)
    truth = cv2.resize(head.texture_truth, (RES, RES), interpolation=cv2.INTER_AREA)
    bake = bake_texture(head.true_vertices, template, head.scan, resolution=RES)

    hole = cut_cheek_hole(bake)
    hole_before = psnr(bake.texture, truth, hole)
    valid_before = psnr(bake.texture, truth, bake.valid)

    renderer = MeshRenderer(OrbitCameras(num_views=3, azimuth_range=40, resolution=256), "torch")
    t0 = time.perf_counter()
    refiner = TextureRefiner(
        bake, head.true_vertices, template, head.scan, renderer, to_canonical=head.to_canonical
    )
    setup_s = time.perf_counter() - t0
    seconds, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(refiner.step()["l1"])
        seconds.append(time.perf_counter() - t0)
    out = refiner.result()
    print(json.dumps({
        "seed": args.seed,
        "texture_resolution": RES,
        "views": 3, "render_resolution": 256, "steps": args.steps,
        "cpu_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
        "hole_texels": int(hole.sum()),
        "refiner_setup_s": round(setup_s, 3),
        "step_s_median": round(statistics.median(seconds), 3),
        "step_s_max": round(max(seconds), 3),
        "l1_first_last": [round(losses[0], 5), round(losses[-1], 5)],
        "psnr_hole_db_before_after": [round(hole_before, 2), round(psnr(out, truth, hole), 2)],
        "psnr_valid_db_bake_refined": [
            round(valid_before, 2), round(psnr(out, truth, bake.valid), 2)],
    }, indent=1))


if __name__ == "__main__":
    main()
