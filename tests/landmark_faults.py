"""Landmarks with a few thrown far away, for the tests of the robust landmark terms."""

from __future__ import annotations

import numpy as np


def displaced_landmarks(head, indices, seed: int = 7) -> np.ndarray:
    """The true landmarks (68,3) of a synthetic head with ``indices`` moved 20-40% of head
    height (largest bounding-box extent) in random directions, seeded; the draws follow the
    order of ``indices``."""
    indices = np.asarray(indices)
    rng = np.random.default_rng(seed)
    height = np.ptp(head.true_vertices, axis=0).max()
    pts = np.array(head.true_landmarks, np.float64)
    direction = rng.normal(size=(len(indices), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    pts[indices] += direction * rng.uniform(0.2, 0.4, len(indices))[:, None] * height
    return pts
