"""Fit a detector's index table: which of its 3D points make each landmark, with what weights.

Training data are heads with known landmarks (synthetic FLAME heads, truth from FLAME's own
landmark embedding) on which the detector's points were detected, lifted and fused in 3D.
``tools/fit_mediapipe_table.py`` runs the whole procedure for MediaPipe.
"""

from __future__ import annotations

import numpy as np


def fit_index_table(points: np.ndarray, truth: np.ndarray, support: int = 16,
                    ridge: float = 1e-3) -> np.ndarray:
    """Affine-combination weights that best reproduce the landmarks from the detector's points.

    Each landmark uses the ``support`` detector points nearest to it (averaged over the heads);
    its weights sum to 1 (so the combination moves with the head) and minimise the squared 3D
    error over all heads plus ``ridge`` x (mean squared point coordinate) x |w - uniform|^2,
    which keeps the weights small where the points alone leave them ill-determined.

    Args:
        points: (N,P,3) the detector's P points fused on N training heads; NaN = not placed
            (replaced by that point's mean over the heads).
        truth: (N,K,3) the K landmarks on the same heads, same frame.
        support: detector points per landmark.
        ridge: regularisation strength (dimensionless).
    Returns:
        (K,P) float64 weights; each row has ``support`` nonzero entries summing to 1.
    """
    x = np.asarray(points, np.float64)
    y = np.asarray(truth, np.float64)
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[2] != 3:
        raise ValueError(f"points (N,P,3) and truth (N,K,3) expected, got {x.shape}, {y.shape}")
    seen = np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen, x, 0.0).sum(0) / seen.sum(0)
    if not np.isfinite(mean).all():
        raise ValueError("some detector points were never placed on any training head")
    x = np.where(seen, x, mean)
    support = min(support, x.shape[1])
    weights = np.zeros((y.shape[1], x.shape[1]))
    for k in range(y.shape[1]):
        dist = np.linalg.norm(mean - y[:, k].mean(0), axis=1)
        sup = np.argsort(dist)[:support]
        a = x[:, sup].transpose(0, 2, 1).reshape(-1, support)  # rows: (head, axis)
        b = y[:, k].reshape(-1)
        lam = ridge * np.trace(a.T @ a) / support
        # KKT system of the equality-constrained least squares (sum of weights = 1).
        kkt = np.zeros((support + 1, support + 1))
        kkt[:support, :support] = a.T @ a + lam * np.eye(support)
        kkt[:support, support] = kkt[support, :support] = 1.0
        rhs = np.concatenate([a.T @ b + lam / support, [1.0]])
        weights[k, sup] = np.linalg.solve(kkt, rhs)[:support]
    return weights
