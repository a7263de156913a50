"""The pure-PyTorch backend's four primitives on analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflame_core.render.backends import BackendUnavailableError, get_backend
from reflame_core.render.backends.topology import edge_opposites

BE = get_backend("torch", "cpu")
TRI = torch.tensor([[0, 1, 2]], dtype=torch.int32)


def _pixel_centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """NDC x, y of pixel centres in rast layout (row 0 = clip y -1)."""
    ys, xs = np.meshgrid((np.arange(h) + 0.5) / h * 2 - 1, (np.arange(w) + 0.5) / w * 2 - 1,
                         indexing="ij")
    return xs, ys


def _inside(xs, ys, corners):
    """Pixel centres strictly inside a 2D triangle (numpy half-planes)."""
    (ax, ay), (bx, by), (cx, cy) = corners
    d1 = (bx - ax) * (ys - ay) - (by - ay) * (xs - ax)
    d2 = (cx - bx) * (ys - by) - (cy - by) * (xs - bx)
    d3 = (ax - cx) * (ys - cy) - (ay - cy) * (xs - cx)
    return ((d1 > 0) & (d2 > 0) & (d3 > 0)) | ((d1 < 0) & (d2 < 0) & (d3 < 0))


def test_one_triangle_coverage_depth_and_interpolation():
    corners = [(-0.7, -0.6), (0.8, -0.3), (0.1, 0.9)]
    pos = torch.tensor([[[x, y, 0.25, 1.0] for x, y in corners]])
    rast = BE.rasterize(pos, TRI, (32, 40))
    assert rast.shape == (1, 32, 40, 4)
    xs, ys = _pixel_centres(32, 40)
    covered = rast[0, ..., 3].numpy() > 0
    np.testing.assert_array_equal(covered, _inside(xs, ys, corners))
    assert np.all(rast[0, ..., 3].numpy()[covered] == 1.0)
    np.testing.assert_allclose(rast[0, ..., 2].numpy()[covered], 0.25, atol=1e-6)
    # With w = 1 the interpolated clip position is the pixel centre itself.
    attr = pos[0, :, :2]
    xy = BE.interpolate(attr, rast, TRI)[0].numpy()
    np.testing.assert_allclose(xy[covered, 0], xs[covered], atol=1e-5)
    np.testing.assert_allclose(xy[covered, 1], ys[covered], atol=1e-5)
    assert np.all(xy[~covered] == 0)


def test_triangles_smaller_than_a_pixel_cover_exactly_the_pixels_they_hold():
    """A sphere of 327k faces at 448² (a dense scan): each triangle is a fraction of a pixel.
    Every pixel inside the disc is covered, and by a triangle that holds its centre (its
    barycentrics within [0,1]; in single precision from whole-image coordinates, some were
    given to a neighbour and shaded from extrapolated values)."""
    import trimesh
    from scipy import ndimage

    from reflame_core.render.cameras import OrbitCameras

    m = trimesh.creation.icosphere(subdivisions=7, radius=1.2)
    cams = OrbitCameras(num_views=1, azimuth_range=0.0, elevations=(0.0,), resolution=448)
    clip = np.c_[m.vertices, np.ones(len(m.vertices))] @ cams.mvp()[0].T
    rast = BE.rasterize(torch.as_tensor(clip[None], dtype=torch.float32),
                        torch.as_tensor(m.faces), (448, 448))[0]
    covered = rast[..., 3].numpy() > 0
    assert covered.sum() > 80000
    assert not (ndimage.binary_fill_holes(covered) & ~covered).any()
    u, v = rast[..., 0].numpy()[covered], rast[..., 1].numpy()[covered]
    bary = np.stack([u, v, 1 - u - v])
    assert bary.min() > -0.01 and bary.max() < 1.01


def test_depth_test_and_perspective_correct_barycentrics():
    # Two overlapping screen-filling triangles; the nearer (z/w smaller) must win everywhere.
    far = [[-3, -3, 0.5, 1], [3, -3, 0.5, 1], [0, 3, 0.5, 1]]
    near = [[-3, -3, -0.2, 1], [3, -3, -0.2, 1], [0, 3, -0.2, 1]]
    pos = torch.tensor([far + near], dtype=torch.float32)
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    rast = BE.rasterize(pos, tri, (8, 8))
    assert torch.all(rast[0, ..., 3] == 2)
    # Perspective: a triangle with w varying; interpolating (x, y, w) then dividing must give the
    # pixel centre, which only holds for perspective-correct barycentrics.
    pos = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [4.0, -2.0, 0.0, 2.0], [0.0, 3.0, 0.0, 3.0]]])
    rast = BE.rasterize(pos, TRI, (16, 16))
    cov = rast[0, ..., 3] > 0
    hom = BE.interpolate(pos[0, :, [0, 1, 3]], rast, TRI)[0]
    xs, ys = _pixel_centres(16, 16)
    np.testing.assert_allclose((hom[..., 0] / hom[..., 2])[cov].numpy(), xs[cov.numpy()], atol=1e-5)
    np.testing.assert_allclose((hom[..., 1] / hom[..., 2])[cov].numpy(), ys[cov.numpy()], atol=1e-5)


def test_texture_bilinear_wrap_and_clamp():
    tex = torch.arange(12, dtype=torch.float64).view(1, 3, 4, 1)
    # Texel centres return texel values; row 0 is v = 0.
    uv = torch.tensor([[[[0.125, 1 / 6], [0.625, 5 / 6]]]], dtype=torch.float64)
    np.testing.assert_allclose(BE.texture(tex, uv)[0, 0, :, 0].numpy(), [0.0, 10.0])
    # Halfway between texel columns 0 and 1 of row 1 -> mean; wrap across u = 1.
    uv = torch.tensor([[[[0.25, 0.5], [1.0, 0.5], [1.0, 0.5]]]], dtype=torch.float64)
    out = BE.texture(tex, uv)[0, 0, :, 0].numpy()
    np.testing.assert_allclose(out[:2], [4.5, (7.0 + 4.0) / 2])
    clamped = BE.texture(tex, uv[:, :, 2:], boundary_mode="clamp")[0, 0, 0, 0].item()
    assert clamped == 7.0


def test_texture_and_interpolate_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(0)
    tex = torch.rand(1, 5, 6, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    uv = (torch.rand(2, 3, 3, 2, dtype=torch.float64, generator=gen) * 0.8 + 0.1)
    uv.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, u: BE.texture(t, u), (tex, uv))
    pos = torch.tensor([[[-0.9, -0.8, 0.1, 1.0], [0.9, -0.7, 0.2, 1.3], [0.0, 0.9, 0.3, 0.8]]],
                       dtype=torch.float64, requires_grad=True)
    attr = torch.rand(3, 2, dtype=torch.float64, generator=gen, requires_grad=True)

    def f(p, a):
        return BE.interpolate(a, BE.rasterize(p, TRI, (6, 6)), TRI)

    assert torch.autograd.gradcheck(f, (pos, attr), atol=1e-6)


def test_edge_opposites_of_a_quad():
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
    opp = edge_opposites(tri)
    # Edge 0 of face 0 joins vertices 1-2, shared with face 1 whose third vertex is 3.
    assert opp[0].tolist() == [3, -1, -1]
    assert opp[1].tolist() == [-1, -1, 0]


def _aa_mask_sum(pos: torch.Tensor, res: int = 32) -> torch.Tensor:
    rast = BE.rasterize(pos, TRI, (res, res))
    cov = (rast[..., 3:4] > 0).to(pos.dtype)
    return BE.antialias(cov, rast, pos, TRI).sum()


def _area_px(pos: torch.Tensor, res: int = 32) -> float:
    p = pos[0, :, :2].detach().numpy() * res / 2
    (ax, ay), (bx, by) = p[1] - p[0], p[2] - p[0]
    return 0.5 * abs(ax * by - ay * bx)


def test_antialiased_mask_area_and_gradient_track_the_true_area():
    corners = [[-0.61, -0.53, 0.0, 1.0], [0.67, -0.41, 0.0, 1.0], [0.07, 0.71, 0.0, 1.0]]
    pos = torch.tensor([corners], requires_grad=True)
    total = _aa_mask_sum(pos)
    hard = (BE.rasterize(pos, TRI, (32, 32))[..., 3] > 0).sum().item()
    true_area = _area_px(pos)
    # Antialiasing brings the pixel count closer to the analytic area.
    assert abs(total.item() - true_area) < abs(hard - true_area) + 1.0
    assert abs(total.item() - true_area) < 0.03 * true_area
    total.backward()
    grad = pos.grad[0, :, :2].numpy()
    # Analytic d(area_px)/d(vertex ndc): moving vertex 2 up grows the triangle.
    eps = 1e-3
    for k, d in [(2, 1), (0, 0), (1, 0)]:
        shifted = pos.detach().clone()
        shifted[0, k, d] += eps
        expect = (_area_px(shifted) - true_area) / eps
        assert np.sign(grad[k, d]) == np.sign(expect)
        assert 0.6 < grad[k, d] / expect < 1.4


def test_silhouette_loss_pulls_vertex_towards_target():
    base = torch.tensor([[[-0.6, -0.6, 0.0, 1.0], [0.6, -0.6, 0.0, 1.0], [0.0, 0.3, 0.0, 1.0]]])
    target_pos = base.clone()
    target_pos[0, 2, 1] = 0.6  # the apex sits higher in the target
    rast_t = BE.rasterize(target_pos, TRI, (32, 32))
    target = BE.antialias((rast_t[..., 3:4] > 0).float(), rast_t, target_pos, TRI)
    pos = base.clone().requires_grad_(True)
    rast = BE.rasterize(pos, TRI, (32, 32))
    mask = BE.antialias((rast[..., 3:4] > 0).float(), rast, pos, TRI)
    loss = ((mask - target) ** 2).sum()
    loss.backward()
    assert pos.grad[0, 2, 1] < 0  # descending moves the apex up, across the target's edge
    # Finite differences (step of about a pixel) agree in sign and rough magnitude.
    step = 2.0 / 32

    def loss_at(y: float) -> float:
        p = base.clone()
        p[0, 2, 1] = y
        r = BE.rasterize(p, TRI, (32, 32))
        m = BE.antialias((r[..., 3:4] > 0).float(), r, p, TRI)
        return ((m - target) ** 2).sum().item()

    fd = (loss_at(0.3 + step) - loss_at(0.3 - step)) / (2 * step)
    assert fd < 0
    assert 0.4 < pos.grad[0, 2, 1].item() / fd < 2.5


def test_backend_selection_on_cpu():
    assert get_backend("auto", "cpu").name == "torch"
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        get_backend("nvdiffrast", "cpu")
    with pytest.raises(ValueError, match="unknown render backend"):
        get_backend("opengl", "cpu")
