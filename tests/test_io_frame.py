"""canonical_frame: axes, centring, size, inverse."""

from __future__ import annotations

import numpy as np
import pytest

from reflame_core.geometry.frame import CANONICAL_EXTENT, canonical_frame, in_head_box


def test_axes_centre_and_extent() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3)) * [10.0, 30.0, 5.0] + [100.0, -50.0, 7.0]
    # Scan uses +z up and -x as the face direction.
    sim = canonical_frame(pts, up="+z", front="-x")
    np.testing.assert_allclose(sim.apply_vectors(np.array([0.0, 0, 1])), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(sim.apply_vectors(np.array([-1.0, 0, 0])), [0, 0, 1], atol=1e-12)
    assert np.isclose(np.linalg.det(sim.rotation), 1.0)
    c = sim.apply(pts)
    np.testing.assert_allclose((c.max(0) + c.min(0)) / 2, 0, atol=1e-9)
    assert np.isclose((c.max(0) - c.min(0)).max(), CANONICAL_EXTENT)
    np.testing.assert_allclose(sim.inverse().apply(c), pts, atol=1e-9)


def test_identity_axes_and_template_size(flame_dir) -> None:
    v = np.load(flame_dir / "flame_template.npz")["vertices"]
    sim = canonical_frame(v)
    np.testing.assert_allclose(sim.rotation, np.eye(3))
    assert abs(sim.scale - 1.0) < 0.01  # the constant is the template's own size


@pytest.mark.parametrize(("up", "front"), [("+y", "-y"), ("+y", "+y"), ("up", "+z"), ("+y", "w")])
def test_bad_axes(up: str, front: str) -> None:
    with pytest.raises(ValueError, match="axis|perpendicular"):
        canonical_frame(np.eye(3), up=up, front=front)


def test_the_head_box_is_the_whole_scan_or_the_head_at_its_end() -> None:
    rng = np.random.default_rng(3)
    scan = rng.normal(size=(400, 3)) * [1.0, 2.0, 0.7]
    canon = canonical_frame(scan).apply(scan)
    assert in_head_box(canon).all()  # a frame set on the whole scan: all of it
    head = rng.uniform(-1.5, 1.5, (300, 3))  # a frame set on the head, a stand below it
    stand = np.c_[np.zeros(40), np.linspace(-1.7, -12.0, 40), np.zeros(40)]
    inside = in_head_box(np.vstack([head, stand]))
    assert inside[:300].all() and not inside[300:].any()
    assert in_head_box(stand + [0.0, -5.0, 0.0]).all()  # nothing in the box: all of it
