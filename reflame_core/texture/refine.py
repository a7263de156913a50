"""Differentiable texture refinement: Adam on the FLAME-UV texture against renders of the scan.

Why only the bake's *invalid* texels are optimised: the projection bake is an exact lookup of
the scan's own texture at each texel's surface point, with sub-texel precision. Orbit renders
(a few hundred pixels wide) are the same texture resampled once more, so pulling a well-baked
texel towards them can only add resampling blur and misregistration; measured on synthetic
heads it lowers the bake's PSNR. The texels the bake could not source (too far, facing away:
filled by push-pull) are where the renders add information. So the gradient is masked to
those texels, the baked ones stay exactly as baked, and the loss is L1 between the fitted
mesh's render and the scan's render (over pixels where both surfaces agree in depth) plus
total variation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from reflame_core.assets.flame import FlameTemplate
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan
from reflame_core.render.renderer import MeshRenderer
from reflame_core.texture.bake import BakeResult


class TextureRefiner:
    """Steppable refinement: one Adam iteration per ``step()`` (the engine's "texture" stage).

    Args:
        bake: the projection bake to start from (its ``valid`` map picks the frozen texels).
        vertices: (5023,3) fitted FLAME vertices, in the scan's frame.
        template: FLAME topology and UVs.
        scan: the textured scan, same frame as ``vertices``.
        renderer: a ``MeshRenderer`` whose cameras see the canonical frame.
        to_canonical: scan frame -> renderer frame (None: already in it).
        views: camera views to use (default: the cameras' enabled views).
        lr: Adam learning rate, in texture units (0..1). On synthetic heads (3 views, 256²
            renders) refilled holes gain ~3 dB within 20-30 steps and slowly drift after ~50:
            the renders under-determine texels smaller than a pixel; keep steps modest.
        tv_weight: weight of the total-variation term.
        depth_tolerance: pixels where the two surfaces differ in depth by more than this
            (renderer units; default 1% of the head's extent) are left out of the data term.
    """

    def __init__(
        self,
        bake: BakeResult,
        vertices: np.ndarray,
        template: FlameTemplate,
        scan: Scan,
        renderer: MeshRenderer,
        *,
        to_canonical: Similarity | None = None,
        views: Sequence[int] | None = None,
        lr: float = 0.005,
        tv_weight: float = 0.1,
        depth_tolerance: float | None = None,
    ):
        if not scan.has_texture:
            raise ValueError("TextureRefiner needs a textured scan (texture, uv, uv_faces)")
        sim = to_canonical or Similarity.identity()
        self.renderer = renderer
        self.views = list(views) if views is not None else renderer.cameras.enabled_indices()
        self.tv_weight = float(tv_weight)
        self.iteration = 0
        dev = renderer.device

        # Only tile-0 faces: FLAME's eyeballs (UV tile 2) would sample the face texture.
        tile0 = np.floor(template.uv[template.uv_faces].mean(1)[:, 0]) == 0
        self._faces = torch.as_tensor(template.faces[tile0], device=dev)
        self._uv_faces = torch.as_tensor(template.uv_faces[tile0], device=dev)
        self._uv = torch.as_tensor(template.uv, dtype=torch.float32, device=dev)
        self._verts = torch.as_tensor(sim.apply(np.asarray(vertices, np.float32)), device=dev)

        scan_verts = torch.as_tensor(sim.apply(scan.vertices), device=dev)
        extent = float((self._verts.max(0).values - self._verts.min(0).values).max())
        tol = 0.01 * extent if depth_tolerance is None else float(depth_tolerance)
        with torch.no_grad():
            target = renderer.render(
                scan_verts, scan.faces, uv=scan.uv, uv_faces=scan.uv_faces,
                texture=torch.tensor(np.asarray(scan.texture), device=dev).float() / 255.0,
                views=self.views,
            )
            fit = renderer.render(self._verts, self._faces, views=self.views)
        self._target = target.color
        agree = (target.mask > 0.999) & (fit.mask > 0.999)
        agree &= (target.depth - fit.depth).abs() < tol
        self._pixels = agree.float()  # [B,H,W,1]
        self._num_pixels = max(float(self._pixels.sum()), 1.0)

        init = torch.as_tensor(bake.texture, device=dev).float() / 255.0
        self.texture = init.clone().requires_grad_(True)
        self._trainable = torch.as_tensor(~bake.valid, device=dev)[..., None].float()
        self._optimizer = torch.optim.Adam([self.texture], lr=lr)

    def step(self) -> dict[str, float]:
        """One Adam iteration; returns the losses {"l1", "tv", "total"} before the update."""
        self._optimizer.zero_grad(set_to_none=True)
        out = self.renderer.render(
            self._verts, self._faces, uv=self._uv, uv_faces=self._uv_faces,
            texture=self.texture, views=self.views,
        )
        l1 = ((out.color - self._target).abs() * self._pixels).sum() / (3 * self._num_pixels)
        tv = total_variation(self.texture)
        total = l1 + self.tv_weight * tv
        total.backward()
        self.texture.grad *= self._trainable
        self._optimizer.step()
        with torch.no_grad():
            self.texture.clamp_(0.0, 1.0)
        self.iteration += 1
        return {"l1": l1.item(), "tv": tv.item(), "total": total.item()}

    def result(self) -> np.ndarray:
        """(R,R,3) uint8 current texture, row 0 = top."""
        t = self.texture.detach().clamp(0, 1).mul(255).round().to(torch.uint8)
        return t.cpu().numpy()


def total_variation(texture: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring texels of ``texture`` [H,W,C]."""
    dx = (texture[:, 1:] - texture[:, :-1]).abs().mean()
    dy = (texture[1:] - texture[:-1]).abs().mean()
    return dx + dy


def refine_texture(
    bake: BakeResult,
    vertices: np.ndarray,
    template: FlameTemplate,
    scan: Scan,
    renderer: MeshRenderer,
    *,
    steps: int = 25,
    **options,
) -> np.ndarray:
    """Run ``steps`` iterations of ``TextureRefiner`` (options as there); (R,R,3) uint8."""
    refiner = TextureRefiner(bake, vertices, template, scan, renderer, **options)
    for _ in range(steps):
        refiner.step()
    return refiner.result()
