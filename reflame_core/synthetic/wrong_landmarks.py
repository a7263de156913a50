"""Wrong landmarks for a synthetic head: the true ones with a few thrown far away.

The robustness benchmarks and tests ask how much a fit suffers when some landmarks are
grossly wrong (a detector fooled by hair, an artist's slip) while the rest are exact.
"""

from __future__ import annotations

import numpy as np

from reflame_core.synthetic.head import SyntheticHead
from reflame_core.synthetic.truth import head_height


def displaced_landmarks(
    head: SyntheticHead, fraction: float, distance: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The true landmarks (68,3) (scan frame) with ``round(fraction * 68)`` of them, chosen at
    random, moved ``distance`` x head height in random directions; and the moved indices."""
    points = np.array(head.true_landmarks, np.float64)
    moved = np.sort(rng.choice(len(points), max(1, round(fraction * len(points))),
                               replace=False))
    direction = rng.normal(size=(len(moved), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    points[moved] += direction * distance * head_height(head)
    return points, moved
