"""Dense correspondence cues: per-pixel targets that tie fit and scan together.

The seed used a network predicting FLAME UVs per pixel of a scan render; its weights are not
public. A cue is any object with ``loss(render, targets, covered, pixel_weight) -> scalar``;
the default compares the 3D points that fit and scan show through each pixel.
"""

from __future__ import annotations

from typing import Protocol

import torch

from reflame_core.fit.losses import dense_l1


class DenseCue(Protocol):
    def loss(
        self, render, targets, covered: torch.Tensor, pixel_weight: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss for a fit ``render`` (RenderOutput with a ``position`` attribute)
        against the scan ``targets`` (ScanTargets); ``covered`` [B,H,W,1] bool pixels both
        show; ``pixel_weight`` [B,H,W,1] region weights."""
        ...


class GeometricDenseCue:
    """Rendered 3D positions of fit and scan compared per pixel (L1 of the distance)."""

    def loss(self, render, targets, covered, pixel_weight):
        return dense_l1(render.attrs["position"], targets.positions, covered, pixel_weight)
