"""Robust weights for landmark residuals: Geman-McClure IRLS with a scale from the residuals.

A few wrong landmarks (a detector confusing an ear with a cheek, a lip point on the chin) pull a
least-squares fit by a fraction of their error; the Geman-McClure kernel makes a residual far
beyond the typical one count almost nothing. Its width comes from the residuals themselves
(median absolute residual, 1.4826 x MAD for a Gaussian's sigma), floored per landmark at a
fraction of the head's size, so that a near-perfect fit does not turn every landmark into an
outlier. The floor grows with the landmark's confidence: a residual left by a landmark whose
position is certain is the fit's error (a head FLAME reaches only so far), not the landmark's.
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
        scale_floor: smallest kernel width of an uncertain landmark (confidence 0), as a
            fraction of ``head_height``.
        scale_floor_certain: the same for a landmark of confidence 1.
        confidence_power: between the two, by confidence to this power.
        head_height: the scan's size (largest bounding-box side), canonical units.
    """

    kernel: str
    tuning: float
    scale_floor: float
    scale_floor_certain: float
    confidence_power: float
    head_height: float

    @classmethod
    def from_config(cls, landmarks_cfg: dict, head_height: float) -> RobustSettings:
        return cls(
            kernel=str(landmarks_cfg["robust_kernel"]),
            tuning=float(landmarks_cfg["robust_tuning"]),
            scale_floor=float(landmarks_cfg["robust_scale_floor"]),
            scale_floor_certain=float(landmarks_cfg["robust_scale_floor_certain"]),
            confidence_power=float(landmarks_cfg["confidence_power"]),
            head_height=float(head_height),
        )


def robust_scale(residuals: np.ndarray, active: np.ndarray, settings: RobustSettings) -> float:
    """Kernel width (canonical units) the residual lengths (L,) of the ``active`` (L,) bool
    landmarks call for, before the floors: ``tuning`` x 1.4826 x median |r| (residuals are
    distances, whose ideal is 0, so the median absolute residual is taken about 0); 0 with
    none active."""
    r = np.abs(np.asarray(residuals, np.float64))[np.asarray(active, bool)]
    if r.size == 0:
        return 0.0
    return settings.tuning * MAD_TO_SIGMA * float(np.median(r))


def kernel_floors(confidence: np.ndarray, settings: RobustSettings) -> np.ndarray:
    """(L,) float64 smallest kernel width of each landmark (canonical units), from its
    confidence (L,) in [0,1]: ``scale_floor`` at 0 to ``scale_floor_certain`` at 1, by
    confidence ** ``confidence_power`` (detections, whose views never agree exactly, stay
    near the low end; a point given without a confidence counts as certain)."""
    c = np.clip(np.asarray(confidence, np.float64), 0.0, 1.0) ** settings.confidence_power
    span = settings.scale_floor_certain - settings.scale_floor
    return (settings.scale_floor + span * c) * settings.head_height


def geman_mcclure_weight(residuals: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """IRLS weight (L,) in (0,1] of Geman-McClure rho(r) = r^2 / (c^2 + r^2): (c^2/(c^2+r^2))^2,
    for a width ``scale`` c, one (scalar) or per residual (L,).

    1 at r = 0, 1/4 at r = c, under 0.01 beyond r = 3c.
    """
    c2 = np.asarray(scale, np.float64) ** 2
    r2 = np.asarray(residuals, np.float64) ** 2
    return (c2 / (c2 + r2)) ** 2


def robust_factors(
    residuals: np.ndarray,
    active: np.ndarray,
    trusted: np.ndarray,
    confidence: np.ndarray,
    settings: RobustSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-landmark factors (L,) float32 in (0,1] for the current residuals, and the kernel
    widths (L,) float64.

    Args:
        residuals: (L,) distance of each fitted landmark to its target, canonical units.
        active: (L,) bool, the landmarks that take part (weight > 0); only they set the width.
        trusted: (L,) bool, landmarks an artist placed: their factor is always 1.
        confidence: (L,) in [0,1], how certain each landmark's position is (its floor).

    Recomputed from scratch at every iteration (IRLS), so it carries no state between steps
    and a rolled-back step needs nothing undone.
    """
    n = len(residuals)
    if settings.kernel == "none":
        return np.ones(n, np.float32), np.full(n, np.inf)
    widths = np.maximum(robust_scale(residuals, active, settings),
                        kernel_floors(confidence, settings))
    factors = geman_mcclure_weight(residuals, widths)
    factors[np.asarray(trusted, bool)] = 1.0
    return factors.astype(np.float32), widths


def robust_factors_torch(
    residuals, active: np.ndarray, trusted: np.ndarray, confidence: np.ndarray,
    settings: RobustSettings,
):
    """``robust_factors`` on a torch tensor of residuals (L,), on its device, without a
    round trip to the host (the fitting loop calls it every iteration). Returns (L,) float32.

    ``active``, ``trusted`` (L,) bool and ``confidence`` (L,) are numpy arrays (fixed while
    the landmarks are).
    """
    import torch

    n = residuals.shape[0]
    device = residuals.device
    if settings.kernel == "none":
        return torch.ones(n, dtype=torch.float32, device=device)
    floors = _on_device(kernel_floors(confidence, settings), device)
    r = residuals.detach().abs().double()
    active = np.asarray(active, bool)
    k = int(active.sum())
    if k == 0:
        widths = floors
    else:
        # The active residuals sort first (inactive ones count as +inf); np.median takes the
        # mean of the two middle values for an even count. No host copy: masks only.
        inactive = _on_device(~active, device)
        ordered = torch.sort(torch.where(inactive, torch.inf, r)).values
        median = 0.5 * (ordered[(k - 1) // 2] + ordered[k // 2])
        widths = torch.maximum(settings.tuning * MAD_TO_SIGMA * median, floors)
    c2 = widths * widths
    factors = (c2 / (c2 + r * r)) ** 2
    keep = _on_device(np.asarray(trusted, bool), device)
    return torch.where(keep, torch.ones_like(factors), factors).float()


_ON_DEVICE: dict[tuple, object] = {}


def _on_device(array: np.ndarray, device):
    """``array`` on ``device``, copied there once per distinct array (a copy from the host
    makes the host wait for the device)."""
    import torch

    key = (str(device), array.dtype.str, array.tobytes())
    if key not in _ON_DEVICE:
        if len(_ON_DEVICE) > 64:
            _ON_DEVICE.clear()
        _ON_DEVICE[key] = torch.as_tensor(array, device=device)
    return _ON_DEVICE[key]
