"""The robust landmark weights of a session, and the landmarks its fit contradicts.

Stages call ``landmark_factors`` at every iteration; ``find_outliers`` reads the same weights
at the session's current vertices for the report and the GUI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.robust import RobustSettings, robust_factors, robust_factors_torch
from reflame_core.landmarks.definitions import landmark_definitions

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession


@dataclass
class LandmarkOutlier:
    """A landmark the fit discounts.

    Attributes:
        index: iBUG index (0..67).
        name: iBUG name.
        residual: distance of the fitted landmark to its target / head height.
        weight: the robust factor it ends with, in (0,1] (before group and user weights).
    """

    index: int
    name: str
    residual: float
    weight: float

    def to_dict(self) -> dict:
        return {
            "index": self.index, "name": self.name,
            "residual": self.residual, "weight": self.weight,
        }


def robust_settings(session: FitSession) -> RobustSettings:
    """The session's robust settings; head height = largest side of the scan's bounding box."""
    return RobustSettings.from_config(session.config.data["landmarks"], session.head_height)


def landmark_residuals(session: FitSession, vertices: torch.Tensor) -> np.ndarray:
    """(L,) distance of each fitted landmark on ``vertices`` (5023,3) to its target, canonical."""
    with torch.no_grad():
        pred = session.embedding_points(vertices)[session.landmark_index]
        return (pred - session.landmark_points).norm(dim=-1).cpu().numpy().astype(np.float64)


def factors_for(session: FitSession, residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust factors (L,) and kernel widths (L,) for landmark residuals (L,) of the session's
    targets."""
    lm = session.landmark_targets
    return robust_factors(residuals, lm.weights > 0, lm.trusted, lm.confidence,
                          robust_settings(session))


def landmark_factors(session: FitSession, vertices: torch.Tensor) -> torch.Tensor:
    """(L,) robust factors at ``vertices``, on the session's device, without gradient (and
    without waiting for the device: the fitting loop calls it every iteration)."""
    lm = session.landmark_targets
    with torch.no_grad():
        pred = session.embedding_points(vertices.detach())[session.landmark_index]
        residuals = (pred - session.landmark_points).norm(dim=-1)
    return robust_factors_torch(residuals, lm.weights > 0, lm.trusted, lm.confidence,
                                robust_settings(session))


def find_outliers(session: FitSession) -> list[LandmarkOutlier]:
    """Enabled, untrusted landmarks whose robust factor at the current vertices is below
    ``landmarks.outlier_weight``, largest residual first. Empty with the kernel off."""
    lm = session.landmark_targets
    if lm is None:
        return []
    residuals = landmark_residuals(session, session.vertices)
    factors, _ = factors_for(session, residuals)
    limit = float(session.config.data["landmarks"]["outlier_weight"])
    flagged = (factors < limit) & (lm.weights > 0) & ~lm.trusted
    height = robust_settings(session).head_height
    names = landmark_definitions().ibug_names
    out = [
        LandmarkOutlier(int(lm.indices[i]), names[int(lm.indices[i])],
                        float(residuals[i] / height), float(factors[i]))
        for i in np.flatnonzero(flagged)
    ]
    return sorted(out, key=lambda o: -o.residual)
