"""Differentiable refinement: fills the texels the bake could not source, keeps the rest."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer
from reflame_core.synthetic.head import make_synthetic_head
from reflame_core.synthetic.texture_cases import cut_cheek_hole
from reflame_core.texture.bake import bake_texture
from reflame_core.texture.refine import TextureRefiner

RES = 512


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[mask]
    return float(10 * np.log10(255.0**2 / np.mean(d**2)))


def test_refinement_improves_a_hole_and_keeps_the_bake(flame_dir, data_dir):
    template = load_flame_template(flame_dir)
    texture = np.asarray(Image.open(data_dir / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(template, texture, load_landmark_embedding(flame_dir), seed=1)
    truth = cv2.resize(head.texture_truth, (RES, RES), interpolation=cv2.INTER_AREA)
    bake = bake_texture(head.true_vertices, template, head.scan, resolution=RES)
    before_all = psnr(bake.texture, truth, bake.valid)

    # A disc of cheek texels the bake "could not source": push-pull fills it from its rim.
    hole = cut_cheek_hole(bake)
    before_hole = psnr(bake.texture, truth, hole)

    renderer = MeshRenderer(OrbitCameras(num_views=3, azimuth_range=40, resolution=256), "torch")
    refiner = TextureRefiner(
        bake, head.true_vertices, template, head.scan, renderer, to_canonical=head.to_canonical
    )
    losses = [refiner.step()["l1"] for _ in range(20)]
    out = refiner.result()
    assert losses[-1] < losses[0]
    assert psnr(out, truth, hole) > before_hole + 1.5
    assert psnr(out, truth, bake.valid) >= psnr(bake.texture, truth, bake.valid)
    assert before_all >= 30.0
