"""The B-spline lattice: a partition of unity that reproduces affine maps, and a bending
measure that is zero on them."""

from __future__ import annotations

import numpy as np
import pytest

from reflame_core.geometry.lattice import Lattice, bspline_weights


def test_bspline_weights_are_a_partition_of_unity() -> None:
    t = np.r_[np.linspace(0.0, 1.0, 101), -0.5, 1.5]  # the last two clamp to the ends
    w = bspline_weights(t, 6)
    assert w.shape == (103, 6)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert (w >= 0).all() and ((w > 0).sum(1) <= 4).all()
    np.testing.assert_allclose(w[-2], w[0])
    np.testing.assert_allclose(w[-1], w[100])
    with pytest.raises(ValueError, match="at least 4"):
        bspline_weights(t, 3)


def _control_positions(lattice: Lattice) -> np.ndarray:
    """(K,3) where each control point sits: a uniform cubic B-spline's control j lies at
    (j - 1) / (n - 3) of the box along its axis."""
    n = lattice.n
    g = (np.arange(n) - 1.0) / (n - 3)
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return lattice.lo + grid * (lattice.hi - lattice.lo)


def test_lattice_moves_points_by_an_affine_map_exactly_and_without_bending() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.0, 1.0, (500, 3)) * [1.0, 1.5, 1.2]
    lattice = Lattice.around(points, 6)
    linear = np.array([[0.1, 0.05, 0.0], [-0.02, -0.1, 0.03], [0.0, 0.04, 0.15]])
    shift = np.array([0.3, -0.2, 0.1])
    controls = _control_positions(lattice) @ linear.T + shift
    moved = points + lattice.basis(points) @ controls
    np.testing.assert_allclose(moved, points + points @ linear.T + shift, atol=1e-12)
    assert np.abs(lattice.bending_rows() @ controls).max() < 1e-12


def test_bending_rows_measure_a_bent_field() -> None:
    lattice = Lattice(np.zeros(3), np.ones(3), 5)
    controls = np.zeros((lattice.num_controls, 3))
    controls[lattice.num_controls // 2, 0] = 1.0  # the middle control point pushed along x
    rows = lattice.bending_rows()
    assert rows.shape == (3 * 3 * 25, 125)  # 3 interior second differences x 25 lines x 3 axes
    bent = rows @ controls
    # Each axis through the middle point sees 1, -2, 1 around it.
    assert np.count_nonzero(bent[:, 0]) == 9 and np.abs(bent[:, 0]).sum() == 12.0
    assert not bent[:, 1:].any()
