"""Residual display helpers: robust colour limits, colour maps, one grid image of the
per-view residuals, per-vertex distances between fit and scan."""

from __future__ import annotations

import numpy as np

from reflame_core.geometry.surface_query import MeshQuery

ROBUST_PERCENTILE = 98.0


def robust_limits(values: np.ndarray, signed: bool,
                  percentile: float = ROBUST_PERCENTILE) -> tuple[float, float]:
    """Colour-map limits that a few outliers cannot blow up: the ``percentile`` of |v|
    (symmetric (-m, m) for signed values, (0, m) otherwise), over finite non-zero values
    (residual images are zero off the head). Never an empty range."""
    v = np.asarray(values, np.float64).ravel()
    v = np.abs(v[np.isfinite(v)])
    nz = v[v > 0]
    m = float(np.percentile(nz, percentile)) if len(nz) else 0.0
    if not m > 0:
        m = 1.0
    return (-m, m) if signed else (0.0, m)


def coolwarm(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(…,3) float32 RGB: blue (lo) - white (middle) - red (hi), clipped."""
    t = np.clip((np.asarray(values, np.float64) - lo) / max(hi - lo, 1e-30), 0.0, 1.0)
    blue, white, red = np.array([0.23, 0.30, 0.75]), np.ones(3), np.array([0.71, 0.02, 0.15])
    a = np.clip(t * 2.0, 0.0, 1.0)[..., None]
    b = np.clip(t * 2.0 - 1.0, 0.0, 1.0)[..., None]
    rgb = np.where(t[..., None] < 0.5, blue + a * (white - blue), white + b * (red - white))
    return rgb.astype(np.float32)


def residual_grid(images: dict[str, np.ndarray], gap: int = 4) -> tuple[np.ndarray, list[str]]:
    """All residual images of one view side by side in one (H, W, 3) colour image, so they
    show in a single window: signed (H,W) maps with robust symmetric limits (coolwarm),
    colour images as they are. Returns the image and a caption per tile (with its range)."""
    tiles, captions = [], []
    for name, img in images.items():
        img = np.asarray(img)
        if img.ndim == 2:
            lo, hi = robust_limits(img, signed=True)
            tiles.append(coolwarm(img, lo, hi))
            captions.append(f"{name} (±{hi:.3g})")
        else:
            tiles.append(np.clip(np.asarray(img, np.float32)[..., :3], 0.0, 1.0))
            captions.append(name)
    if not tiles:
        return np.zeros((1, 1, 3), np.float32), []
    h = max(t.shape[0] for t in tiles)
    w = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = np.full((h, w, 3), 0.15, np.float32)
    x = 0
    for t in tiles:
        out[: t.shape[0], x: x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out, captions


def scan_to_fit_distances(scan_vertices: np.ndarray, fit_vertices: np.ndarray,
                          fit_faces: np.ndarray) -> np.ndarray:
    """(S,) distance of each scan vertex to the fitted FLAME surface (same frame)."""
    return MeshQuery(fit_vertices, fit_faces).closest(scan_vertices).distance
