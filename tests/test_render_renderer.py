"""MeshRenderer: a cube with known depth/coverage, gradients, and the FLAME template."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflame_core.assets.flame import load_flame_template
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer

CUBE_V = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)],
                  dtype=np.float32)
CUBE_F = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                   [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
FRONT = OrbitCameras(num_views=1, resolution=64)  # camera on +z, 4.5 from the origin


def test_cube_coverage_depth_and_projection():
    out = MeshRenderer(FRONT, backend="torch").render(
        torch.tensor(CUBE_V), CUBE_F, attrs={"xyz": torch.tensor(CUBE_V)}
    )
    assert out.mask.shape == (1, 64, 64, 1) and out.view_ids == [0]
    hard = out.tri_id[0] >= 0
    # The front face z = 0.5 is 4.0 from the camera; its square spans f*0.5/4 NDC.
    f = 1.0 / np.tan(np.radians(20.0))
    half_px = f * 0.5 / 4.0 * 32
    centres = np.arange(64) + 0.5
    inside_1d = np.abs(centres - 32) < half_px
    np.testing.assert_array_equal(hard.numpy(), np.outer(inside_1d, inside_1d))
    assert out.mask.sum().item() == pytest.approx((2 * half_px) ** 2, rel=0.01)
    np.testing.assert_allclose(out.depth[0, ..., 0][hard].numpy(), 4.0, atol=1e-4)
    assert torch.all(out.depth[0][~hard] == 0)
    # Interpolated world positions lie on the front face and project back to their pixel.
    xyz = out.attrs["xyz"][0][hard]
    np.testing.assert_allclose(xyz[:, 2].numpy(), 0.5, atol=1e-5)
    pix, depth = FRONT.project(xyz.numpy())
    rows, cols = np.nonzero(hard.numpy())
    np.testing.assert_allclose(pix[0, :, 0], cols + 0.5, atol=1e-3)
    np.testing.assert_allclose(pix[0, :, 1], rows + 0.5, atol=1e-3)
    np.testing.assert_allclose(depth[0], 4.0, atol=1e-4)


def test_top_of_image_is_up():
    # A triangle above the horizon (world y > 0) must land in the upper image rows.
    verts = torch.tensor([[-0.5, 0.2, 0.0], [0.5, 0.2, 0.0], [0.0, 0.6, 0.0]])
    out = MeshRenderer(FRONT, backend="torch").render(verts, np.array([[0, 1, 2]]))
    rows = np.nonzero(out.tri_id[0].numpy() >= 0)[0]
    assert rows.size > 10 and rows.max() < 32


def test_texture_colour_and_its_gradient():
    verts = torch.tensor(CUBE_V)
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    # Front face (+z, corners 1,3,5,7): x -> u, y -> v (OBJ: v up).
    uv_faces = np.zeros_like(CUBE_F)
    uv_faces[10] = [0, 1, 3]
    uv_faces[11] = [0, 3, 2]
    tex = torch.zeros(2, 2, 3)
    tex[0, :, 0] = 1.0  # top texture row (v = 1) is red, bottom row blue
    tex[1, :, 2] = 1.0
    tex.requires_grad_(True)
    out = MeshRenderer(FRONT, backend="torch").render(
        verts, CUBE_F, uv=uv, uv_faces=uv_faces, texture=tex, views=[0]
    )
    c = out.color[0].detach().numpy()
    assert c[26, 32, 0] > 0.8 and c[26, 32, 2] < 0.2  # upper half red
    assert c[38, 32, 2] > 0.8 and c[38, 32, 0] < 0.2  # lower half blue
    out.color[..., 0].sum().backward()
    assert tex.grad[0, :, 0].sum() > 0 and tex.grad[:, :, 1].abs().sum() == 0


def test_depth_gradient_matches_finite_differences():
    cams = OrbitCameras(num_views=3, azimuth_range=30.0, resolution=48)
    renderer = MeshRenderer(cams, backend="torch")
    verts = torch.tensor(CUBE_V, dtype=torch.float32)
    base = renderer.render(verts, CUBE_F)
    # Weight pixels away from the silhouette so coverage changes do not enter the difference.
    inner = torch.nn.functional.max_pool2d(1 - base.mask.permute(0, 3, 1, 2), 5, 1, 2)
    weight = (1 - inner).permute(0, 2, 3, 1).detach() * torch.linspace(0.5, 1.5, 48)[:, None]

    def loss(v: torch.Tensor) -> torch.Tensor:
        out = renderer.render(v, CUBE_F, attrs={"xyz": v})
        return (out.depth * weight).sum() + (out.attrs["xyz"][..., :1] * weight).sum()

    v = verts.clone().requires_grad_(True)
    loss(v).backward()
    eps = 2e-3
    for k, d in [(7, 2), (5, 0), (3, 1)]:
        plus, minus = verts.clone(), verts.clone()
        plus[k, d] += eps
        minus[k, d] -= eps
        fd = (loss(plus) - loss(minus)).item() / (2 * eps)
        assert v.grad[k, d].item() == pytest.approx(fd, rel=0.05, abs=1.0)


@pytest.fixture(scope="module")
def flame(flame_dir):
    template = load_flame_template(flame_dir)
    return torch.tensor(template.vertices, dtype=torch.float32), template.faces


def test_flame_template_default_views(flame):
    vertices, faces = flame
    cams = OrbitCameras(resolution=96)  # default layout: 40 views over ±150°
    out = MeshRenderer(cams, backend="torch").render(vertices, faces, views=[0, 13, 19, 20, 26])
    mask = out.mask[..., 0].detach().numpy()
    assert out.tri_id.shape == (5, 96, 96)
    assert np.all(mask.reshape(5, -1).sum(1) > 0.15 * 96 * 96)
    # The near-front views (az -3.8°, +3.8°) are centred horizontally.
    for i in (2, 3):
        cols = np.nonzero(mask[i] > 0.5)[1]
        assert abs(cols.mean() - 48) < 3
    # Views at -50° and +50° (13 and 26) mirror each other left/right.
    a, b = mask[1] > 0.5, mask[4][:, ::-1] > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.95
    # Depth is the camera distance minus at most the head's radius.
    depth = out.depth[..., 0].numpy()
    assert depth[mask > 0.99].min() > 2.0 and depth.max() < 6.5


def test_default_views_are_the_enabled_ones():
    cams = OrbitCameras(num_views=4, resolution=16)
    cams.set_enabled(1, False)
    out = MeshRenderer(cams, backend="torch").render(torch.tensor(CUBE_V), CUBE_F)
    assert out.view_ids == [0, 2, 3] and out.mask.shape[0] == 3
    cams.enabled[:] = False
    with pytest.raises(ValueError, match="disabled"):
        MeshRenderer(cams, backend="torch").render(torch.tensor(CUBE_V), CUBE_F)
