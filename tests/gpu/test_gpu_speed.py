"""The GPU fast paths against their CPU counterparts: the dense-inverse Large-Steps solve and
the UV layout rasterized through nvdiffrast."""

from __future__ import annotations

import numpy as np
import torch

from reflame_core.fit.parameterize import LaplacianSolve, laplacian_system
from reflame_core.render.backends import get_backend
from reflame_core.texture.uv_raster import rasterize_uv, rasterize_uv_with


def test_dense_inverse_on_cuda_matches_the_cpu_cholesky(flame_template) -> None:
    faces = torch.as_tensor(flame_template.faces, dtype=torch.int64)
    u = torch.randn(flame_template.num_vertices, 3)
    cpu = LaplacianSolve(laplacian_system(flame_template.num_vertices, faces, 30.0)).solve(u)
    gpu_solver = LaplacianSolve(laplacian_system(flame_template.num_vertices, faces.cuda(), 30.0))
    assert gpu_solver.inverse is not None  # the dense path is the one chosen on CUDA
    gpu = gpu_solver.solve(u.cuda()).cpu()
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), rtol=1e-4, atol=1e-4)


def test_uv_raster_through_nvdiffrast_matches_the_cpu_rasterizer(flame_template) -> None:
    res = 512
    cpu = rasterize_uv(flame_template.uv, flame_template.uv_faces, res, tile=0)
    gpu = rasterize_uv_with(get_backend("nvdiffrast", "cuda"), flame_template.uv,
                            flame_template.uv_faces, res, tile=0)
    covered = cpu.covered | gpu.covered
    assert (cpu.covered == gpu.covered)[covered].mean() > 0.98  # edge texels may differ
    both = cpu.covered & gpu.covered
    same = cpu.face_id[both] == gpu.face_id[both]
    assert same.mean() > 0.97
    np.testing.assert_allclose(gpu.bary[both][same], cpu.bary[both][same], atol=2e-3)
