"""OrbitCameras: layout, OpenGL conventions, projection and enable flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflame_core.render.cameras import OrbitCameras


def test_default_layout():
    cams = OrbitCameras()
    assert cams.num_total == 40 and cams.image_size == (448, 448)
    assert cams.azimuths[0] == pytest.approx(-150.0) and cams.azimuths[-1] == pytest.approx(150.0)
    assert np.all(cams.elevations_per_view == 0.0)
    assert cams.enabled_indices() == list(range(40))
    np.testing.assert_allclose(np.linalg.norm(cams.camera_positions(), axis=1), 4.5)


def test_rings_order_and_single_view():
    cams = OrbitCameras(num_views=3, azimuth_range=90.0, elevations=(0.0, 20.0))
    np.testing.assert_allclose(cams.azimuths, [-90, 0, 90, -90, 0, 90])
    np.testing.assert_allclose(cams.elevations_per_view, [0, 0, 0, 20, 20, 20])
    assert cams.camera_positions()[4, 1] > 0  # the upper ring is above the horizon
    one = OrbitCameras(num_views=1)
    np.testing.assert_allclose(one.camera_positions()[0], [0.0, 0.0, 4.5], atol=1e-12)


def test_front_view_is_opengl_lookat():
    cams = OrbitCameras(num_views=1, resolution=100)
    view = cams.view_matrices()[0]
    np.testing.assert_allclose(view[:3, :3], np.eye(3), atol=1e-12)  # looks down -z, +y up
    np.testing.assert_allclose(view @ [0, 0, 0, 1], [0, 0, -4.5, 1], atol=1e-12)
    pix, depth = cams.project(np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]))
    np.testing.assert_allclose(pix[0, 0], [50.0, 50.0], atol=1e-9)  # image centre
    assert pix[0, 1, 0] > 50.0  # world +x is to the right when facing the face
    assert pix[0, 2, 1] < 50.0  # world +y is up, i.e. smaller row
    np.testing.assert_allclose(depth[0], 4.5)
    # Pixel scale: focal length f = 1/tan(fov/2) in NDC, half the image per NDC unit.
    f = 1.0 / np.tan(np.radians(20.0))
    assert pix[0, 1, 0] - 50.0 == pytest.approx(f * 0.5 / 4.5 * 50.0)


def test_side_view_sees_positive_x_side():
    cams = OrbitCameras(num_views=3, azimuth_range=90.0)
    np.testing.assert_allclose(cams.camera_positions()[2], [4.5, 0, 0], atol=1e-12)
    _, depth = cams.project(np.array([[1.0, 0.0, 0.0]]), views=[2])
    assert depth[0, 0] == pytest.approx(3.5)


def test_project_torch_matches_numpy_and_is_differentiable():
    cams = OrbitCameras(num_views=5, elevations=(0.0, 30.0), resolution=64)
    pts = np.random.default_rng(0).normal(size=(7, 3)) * 0.5
    pix_np, depth_np = cams.project(pts)
    t = torch.tensor(pts, dtype=torch.float64, requires_grad=True)
    pix_t, depth_t = cams.project(t)
    np.testing.assert_allclose(pix_t.detach().numpy(), pix_np, rtol=1e-10)
    np.testing.assert_allclose(depth_t.detach().numpy(), depth_np, rtol=1e-10)
    pix_t.sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_enabled_flags_survive_rebuild():
    cams = OrbitCameras(num_views=9, azimuth_range=160.0)
    back = np.abs(cams.azimuths) > 100
    for i in np.flatnonzero(back):
        cams.set_enabled(int(i), False)
    more = cams.rebuilt(num_views=33, elevations=(0.0, 15.0))
    assert more.num_total == 66
    # New views inherit from the nearest old view: the far back is still off, the front on.
    assert not more.enabled[np.abs(more.azimuths) > 130].any()
    assert more.enabled[np.abs(more.azimuths) < 70].all()
    same = cams.rebuilt()
    np.testing.assert_array_equal(same.enabled, cams.enabled)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="enabled"):
        OrbitCameras(num_views=4, enabled=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="elevations"):
        OrbitCameras(elevations=(90.0,))
    with pytest.raises(IndexError):
        OrbitCameras(num_views=2).set_enabled(5, False)
