"""How a landmark's confidence is shown: one colour ramp (red = doubtful, through amber, to
green = sure) and a size (the doubtful drawn larger), used by the viewer and the table alike,
so the landmarks to check first are the ones that stand out."""

from __future__ import annotations

import numpy as np

# Ramp stops (confidence, RGB): red below LOW, amber in the middle, green from HIGH on.
LOW, HIGH = 0.3, 0.9
_STOPS = np.array([LOW, (LOW + HIGH) / 2, HIGH])
_COLOURS = np.array([(0.95, 0.10, 0.10), (1.00, 0.70, 0.05), (0.15, 0.80, 0.25)])
# Point size of a landmark relative to the largest (confidence 0): a sure one is 30% of it.
SMALLEST = 0.3


def confidence_colors(confidence: np.ndarray) -> np.ndarray:
    """(M,3) float RGB in [0,1] for confidences (M,) in [0,1] (NaN counts as 0)."""
    c = np.nan_to_num(np.asarray(confidence, np.float64), nan=0.0)
    return np.stack([np.interp(c, _STOPS, _COLOURS[:, k]) for k in range(3)], axis=-1)


def confidence_sizes(confidence: np.ndarray) -> np.ndarray:
    """(M,) relative point size in [SMALLEST, 1]: 1 at confidence 0, SMALLEST at 1."""
    c = np.clip(np.nan_to_num(np.asarray(confidence, np.float64), nan=0.0), 0.0, 1.0)
    return 1.0 - (1.0 - SMALLEST) * c
