"""Texture cases with known truth: a bake with texels it "could not source"."""

from __future__ import annotations

import numpy as np

from reflame_core.texture.bake import BakeResult
from reflame_core.texture.inpaint import push_pull_fill


def cut_cheek_hole(bake: BakeResult) -> np.ndarray:
    """Mark a disc of cheek texels as unsourced and fill it by push-pull from its rim, as the
    bake does where the scan has a hole. Changes ``bake`` in place; returns the (R,R) bool
    mask of the disc (texels that were valid before)."""
    res = bake.texture.shape[0]
    yy, xx = np.mgrid[:res, :res]
    hole = ((xx - 0.37 * res) ** 2 + (yy - 0.55 * res) ** 2 < (0.05 * res) ** 2) & bake.valid
    bake.valid &= ~hole
    filled = push_pull_fill(bake.texture.astype(np.float32), bake.valid)
    bake.texture = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    return hole
