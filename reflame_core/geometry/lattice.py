"""A smooth deformation of space: cubic B-spline displacements on a lattice of control points.

``x' = x + basis(x) @ c``, with ``c`` (K,3) the displacements of the K = n³ control points of
a regular lattice over a box. The map is smooth everywhere in the box (C² across cells) and
linear in ``c``, so point-to-plane and point-to-point constraints on it are linear least
squares. Uniform cubic B-splines reproduce affine maps exactly, and their second differences
over the lattice measure how far a field bends away from one.
"""

from __future__ import annotations

import numpy as np


def bspline_weights(t: np.ndarray, n: int) -> np.ndarray:
    """(N,n) weights of the ``n`` control points of a uniform cubic B-spline along one axis at
    parameters ``t`` (N,) in [0,1] (clamped): four non-zero per row, summing to 1."""
    if n < 4:
        raise ValueError(f"a cubic B-spline lattice needs at least 4 control points, got {n}")
    s = np.clip(np.asarray(t, np.float64), 0.0, 1.0) * (n - 3)
    cell = np.clip(np.floor(s).astype(np.int64), 0, n - 4)
    u = s - cell
    pieces = np.stack([(1 - u) ** 3, 3 * u**3 - 6 * u**2 + 4,
                       -3 * u**3 + 3 * u**2 + 3 * u + 1, u**3], axis=1) / 6.0
    w = np.zeros((len(s), n))
    rows = np.arange(len(s))
    for k in range(4):
        w[rows, cell + k] = pieces[:, k]
    return w


class Lattice:
    """``n`` x ``n`` x ``n`` control points spanning the box ``lo``..``hi`` (3,) each.

    The box spans the control points' supports: a point in it is moved by the 4³ control
    points around it. Points outside are moved as the box's nearest face moves.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, n: int):
        self.lo = np.asarray(lo, np.float64)
        self.hi = np.asarray(hi, np.float64)
        self.n = int(n)

    @classmethod
    def around(cls, points: np.ndarray, n: int, margin: float = 0.1) -> Lattice:
        """A lattice over the bounding box of ``points`` (N,3), grown by ``margin`` of its
        size on every side."""
        p = np.asarray(points, np.float64)
        pad = margin * np.ptp(p, axis=0)
        return cls(p.min(0) - pad, p.max(0) + pad, n)

    @property
    def num_controls(self) -> int:
        return self.n**3

    def basis(self, points: np.ndarray) -> np.ndarray:
        """(N,K) weights of the control points at ``points`` (N,3): ``points + basis @ c`` is
        where displacements ``c`` (K,3) move them."""
        t = (np.asarray(points, np.float64) - self.lo) / (self.hi - self.lo)
        wx, wy, wz = (bspline_weights(t[:, a], self.n) for a in range(3))
        return np.einsum("ni,nj,nk->nijk", wx, wy, wz).reshape(len(t), -1)

    def bending_rows(self) -> np.ndarray:
        """(R,K) second differences of the control displacements along each lattice axis:
        zero exactly where the displacements are an affine function of position, so
        ``|rows @ c|²`` measures how far a field bends."""
        n = self.n
        index = np.arange(n**3).reshape(n, n, n)
        blocks = []
        for axis in range(3):
            ids = np.moveaxis(index, axis, 0)
            before, mid, after = (ids[k:n - 2 + k].reshape(-1) for k in range(3))
            rows = np.zeros((len(mid), n**3))
            r = np.arange(len(mid))
            rows[r, before] = 1.0
            rows[r, mid] = -2.0
            rows[r, after] = 1.0
            blocks.append(rows)
        return np.concatenate(blocks)
