"""Robust weights for landmark residuals: Geman-McClure IRLS with a scale from the residuals.

A few wrong landmarks (a detector confusing an ear with a cheek, a lip point on the chin) pull a
least-squares fit by a fraction of their error; the Geman-McClure kernel makes a residual far
beyond the typical one count almost nothing. Its scale comes from the residuals themselves
(median absolute residual, 1.4826 x MAD for a Gaussian's sigma), floored at a fraction of the
head's size so that a near-perfect fit does not turn every landmark into an outlier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KERNELS = ("geman_mcclure", "none")

# MAD -> standard deviation for Gaussian residuals.
MAD_TO_SIGMA = 1.4826


@dataclass
class RobustSettings:
    """The ``[landmarks]`` robust settings, with the scan's size in canonical units.

    Attributes:
        kernel: "geman_mcclure" or "none" (plain least squares: every factor 1).
        tuning: kernel width in robust sigmas (a residual of ``tuning`` sigmas gets 1/4).
        scale_floor: smallest kernel width, as a fraction of ``head_height``.
        head_height: the scan's size (largest bounding-box side), canonical units.
    """

    kernel: str
    tuning: float
    scale_floor: float
    head_height: float

    @classmethod
    def from_config(cls, landmarks_cfg: dict, head_height: float) -> RobustSettings:
        return cls(
            kernel=str(landmarks_cfg["robust_kernel"]),
            tuning=float(landmarks_cfg["robust_tuning"]),
            scale_floor=float(landmarks_cfg["robust_scale_floor"]),
            head_height=float(head_height),
        )


def robust_scale(residuals: np.ndarray, active: np.ndarray, settings: RobustSettings) -> float:
    """Kernel width (canonical units) from residual lengths (L,) of the ``active`` (L,) bool ones.

    ``tuning`` x 1.4826 x median |r| (residuals are distances, whose ideal is 0, so the median
    absolute residual is taken about 0), at least ``scale_floor`` x ``head_height``.
    """
    floor = settings.scale_floor * settings.head_height
    r = np.abs(np.asarray(residuals, np.float64))[np.asarray(active, bool)]
    if r.size == 0:
        return floor
    return max(settings.tuning * MAD_TO_SIGMA * float(np.median(r)), floor)


def geman_mcclure_weight(residuals: np.ndarray, scale: float) -> np.ndarray:
    """IRLS weight (L,) in (0,1] of Geman-McClure rho(r) = r^2 / (c^2 + r^2): (c^2/(c^2+r^2))^2.

    1 at r = 0, 1/4 at r = c, under 0.01 beyond r = 3c.
    """
    c2 = float(scale) ** 2
    r2 = np.asarray(residuals, np.float64) ** 2
    return (c2 / (c2 + r2)) ** 2


def robust_factors(
    residuals: np.ndarray,
    active: np.ndarray,
    trusted: np.ndarray,
    settings: RobustSettings,
) -> tuple[np.ndarray, float]:
    """Per-landmark factors (L,) float32 in (0,1] for the current residuals, and the scale.

    Args:
        residuals: (L,) distance of each fitted landmark to its target, canonical units.
        active: (L,) bool, the landmarks that take part (weight > 0); only they set the scale.
        trusted: (L,) bool, landmarks an artist placed: their factor is always 1.

    Recomputed from scratch at every iteration (IRLS), so it carries no state between steps
    and a rolled-back step needs nothing undone.
    """
    n = len(residuals)
    if settings.kernel == "none":
        return np.ones(n, np.float32), float("inf")
    scale = robust_scale(residuals, active, settings)
    factors = geman_mcclure_weight(residuals, scale)
    factors[np.asarray(trusted, bool)] = 1.0
    return factors.astype(np.float32), scale


def robust_factors_torch(
    residuals, active: np.ndarray, trusted: np.ndarray, settings: RobustSettings
):
    """``robust_factors`` on a torch tensor of residuals (L,), on its device, without a
    round trip to the host (the fitting loop calls it every iteration). Returns (L,) float32.

    ``active`` and ``trusted`` are (L,) bool numpy arrays (fixed while the landmarks are).
    """
    import torch

    n = residuals.shape[0]
    device = residuals.device
    if settings.kernel == "none":
        return torch.ones(n, dtype=torch.float32, device=device)
    floor = settings.scale_floor * settings.head_height
    r = residuals.detach().abs().double()
    active = np.asarray(active, bool)
    k = int(active.sum())
    if k == 0:
        scale = torch.full((), floor, dtype=torch.float64, device=device)
    else:
        # The active residuals sort first (inactive ones count as +inf); np.median takes the
        # mean of the two middle values for an even count. No host copy: masks only.
        inactive = _device_mask(~active, device)
        ordered = torch.sort(torch.where(inactive, torch.inf, r)).values
        median = 0.5 * (ordered[(k - 1) // 2] + ordered[k // 2])
        scale = (settings.tuning * MAD_TO_SIGMA * median).clamp_min(floor)
    c2 = scale * scale
    factors = (c2 / (c2 + r * r)) ** 2
    keep = _device_mask(np.asarray(trusted, bool), device)
    return torch.where(keep, torch.ones_like(factors), factors).float()


_MASKS: dict[tuple, object] = {}


def _device_mask(mask: np.ndarray, device):
    """A bool mask on ``device``, copied there once per distinct mask (a copy from the host
    makes the host wait for the device)."""
    import torch

    key = (str(device), mask.tobytes())
    if key not in _MASKS:
        if len(_MASKS) > 64:
            _MASKS.clear()
        _MASKS[key] = torch.as_tensor(mask, device=device)
    return _MASKS[key]
