"""Per-axis scale and offset ``x' = scales * x + offset`` fitted to points and planes.

One linear least-squares solve: point-to-point rows (landmarks) and point-to-plane rows (scan
surface), six unknowns. Point-to-plane makes each ICP iteration converge far faster than
point-to-point, which only slides along the surface.
"""

from __future__ import annotations

import numpy as np


def point_rows(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``scales_k * src_k + offset_k = dst_k``, three per point.

    Args:
        src: (N,3) points before the transform; dst: (N,3) where they should go.

    Returns:
        a: (3N,6) coefficients of ``[scales(3), offset(3)]``; b: (3N,) right-hand sides.
    """
    n = len(src)
    a = np.zeros((n, 3, 6))
    for k in range(3):
        a[:, k, k] = src[:, k]
        a[:, k, 3 + k] = 1.0
    return a.reshape(3 * n, 6), np.asarray(dst, np.float64).reshape(3 * n)


def plane_rows(
    src: np.ndarray, dst: np.ndarray, normals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``normal . (scales * src + offset) = normal . dst``, one per point.

    Args:
        src: (N,3) points before the transform; dst: (N,3) points on the target surface;
            normals: (N,3) unit target normals at ``dst``.

    Returns:
        a: (N,6) coefficients of ``[scales(3), offset(3)]``; b: (N,) right-hand sides.
    """
    a = np.concatenate([normals * src, normals], axis=1)
    return a, (normals * dst).sum(1)


def solve_axis_scale(
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    current: np.ndarray,
    damping: float = 1e-6,
) -> np.ndarray:
    """Weighted least squares over row blocks ``(a (M,6), b (M,), w (M,))``.

    ``damping`` (relative to the total weight) pulls toward ``current`` (6,) so that a
    degenerate system (say one axis without a constraint) keeps that axis as it was instead of
    failing. Returns ``[scales(3), offset(3)]`` (6,).
    """
    lhs = np.zeros((6, 6))
    rhs = np.zeros(6)
    total = 0.0
    for a, b, w in blocks:
        lhs += (a * w[:, None]).T @ a
        rhs += (a * w[:, None]).T @ b
        total += float(w.sum())
    lam = damping * max(total, 1e-12)
    return np.linalg.solve(lhs + lam * np.eye(6), rhs + lam * current)


def trimmed(residuals: np.ndarray, keep: np.ndarray, fraction: float) -> np.ndarray:
    """``keep`` (N,) bool minus the worst ``fraction`` of the kept residuals (N,).

    Trimmed ICP: a wrong landmark or a patch of hair is among the largest residuals, so it
    drops out instead of pulling the whole transform.
    """
    out = keep.copy()
    count = int(keep.sum())
    drop = int(np.floor(fraction * count))
    if drop == 0:
        return out
    idx = np.flatnonzero(keep)
    worst = idx[np.argsort(residuals[idx])[count - drop:]]
    out[worst] = False
    return out


def axis_scale_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[scales(3), offset(3)]`` taking ``src`` (N,3) closest to ``dst`` (N,3), per axis."""
    a, b = point_rows(src, dst)
    return solve_axis_scale([(a, b, np.ones(len(b)))], np.r_[np.ones(3), np.zeros(3)])
