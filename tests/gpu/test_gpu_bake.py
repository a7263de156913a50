"""The texture bake on CUDA (nvdiffrast raster, grid queries, torch colours and fill) against
the numpy bake on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from reflame_core.render.backends import get_backend
from reflame_core.texture.bake import bake_texture


@pytest.mark.parametrize("method", ["normal_ray", "closest"])
def test_cuda_bake_matches_the_numpy_bake(flame_template, small_synthetic_head, method) -> None:
    head = small_synthetic_head
    ref = bake_texture(head.true_vertices, flame_template, head.scan, resolution=512,
                       method=method)
    got = bake_texture(head.true_vertices, flame_template, head.scan, resolution=512,
                       method=method, device="cuda", backend=get_backend("auto", "cuda"))
    mse = np.mean((got.texture.astype(np.float64) - ref.texture) ** 2)
    assert 10 * np.log10(255.0**2 / max(mse, 1e-12)) > 40.0
    # nvdiffrast may give a texel centre on a shared UV edge to the other face.
    assert (got.valid != ref.valid).mean() < 1e-3
    assert got.valid.mean() > 0.8
