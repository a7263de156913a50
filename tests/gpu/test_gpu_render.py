"""nvdiffrast against the PyTorch rasterizer on the FLAME template, both on CUDA."""

from __future__ import annotations

import torch

from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer


def test_nvdiffrast_matches_the_torch_backend(flame_template) -> None:
    cams = OrbitCameras(num_views=8, resolution=256)
    faces = torch.as_tensor(flame_template.faces, device="cuda")
    verts = torch.as_tensor(flame_template.vertices, dtype=torch.float32, device="cuda")
    a = MeshRenderer(cams, "nvdiffrast", "cuda").render(verts, faces)
    b = MeshRenderer(cams, "torch", "cuda").render(verts, faces)
    ca, cb = a.tri_id >= 0, b.tri_id >= 0
    assert ((ca & cb).sum() / (ca | cb).sum()).item() > 0.99
    both = ca & cb
    rel = ((a.depth[..., 0] - b.depth[..., 0]).abs() / a.depth[..., 0])[both]
    assert torch.quantile(rel, 0.99).item() < 1e-3
