"""Fill texels without colour from those with colour (push-pull) so gaps and UV seams vanish."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def push_pull_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill unknown texels with a smooth extrapolation of the known ones.

    Push: build a pyramid of known-weighted averages (2x2 box sums) down to 1x1. Pull: from
    coarse to fine, every texel keeps its own average where it has support and blends in the
    upsampled coarser level where it has less. Known texels come back unchanged. Linear in
    the number of texels (about 0.1 s at 2048² on one core), unlike diffusion inpainting on
    large holes.

    Args:
        image: (H,W,C) float32 colours; values at unknown texels are ignored.
        known: (H,W) bool.

    Returns:
        (H,W,C) float32, equal to ``image`` where ``known``; the whole map is filled (uncovered
        gutters too, which keeps bilinear/mip-mapped lookups at chart borders clean). An
        all-unknown input comes back as zeros.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 3 or known.shape != img.shape[:2]:
        raise ValueError(
            f"push_pull_fill: needs image (H,W,C), known (H,W); got {img.shape}, {known.shape}"
        )
    with torch.inference_mode():
        return push_pull_fill_tensor(torch.from_numpy(np.ascontiguousarray(img)),
                                     torch.from_numpy(np.ascontiguousarray(known, bool))).numpy()


def push_pull_fill_tensor(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``push_pull_fill`` on torch tensors, on their device (the GPU bake's fill; the numpy
    function runs this on the CPU).

    Args:
        image: (H,W,C) float32; known: (H,W) bool.

    Returns:
        (H,W,C) float32, as ``push_pull_fill``.
    """
    if image.ndim != 3 or known.shape != image.shape[:2]:
        raise ValueError(
            f"push_pull_fill_tensor: needs image (H,W,C), known (H,W); got "
            f"{tuple(image.shape)}, {tuple(known.shape)}"
        )
    img = image.float()
    w = known.float()
    levels = [(img * w[..., None], w)]
    while max(levels[-1][1].shape) > 1:
        c, wt = levels[-1]
        h, wd = wt.shape
        ph, pw = h % 2, wd % 2
        if ph or pw:
            c = F.pad(c, (0, 0, 0, pw, 0, ph))
            wt = F.pad(wt, (0, pw, 0, ph))
        c2 = c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]
        w2 = wt[0::2, 0::2] + wt[1::2, 0::2] + wt[0::2, 1::2] + wt[1::2, 1::2]
        levels.append((c2, w2))

    coarse, wc = levels[-1]
    filled = coarse / wc.clamp_min(1e-12)[..., None]
    for c, wt in reversed(levels[:-1]):
        h, wd = wt.shape
        up = F.interpolate(filled.permute(2, 0, 1)[None], scale_factor=2, mode="bilinear",
                           align_corners=False)[0].permute(1, 2, 0)[:h, :wd]
        mean = c / wt.clamp_min(1e-12)[..., None]
        alpha = wt.clamp(0.0, 1.0)[..., None]
        filled = alpha * mean + (1.0 - alpha) * up
    return torch.where(known[..., None], img, filled)
