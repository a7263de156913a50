"""The pure-PyTorch backend: nvdiffrast's four primitives on any torch device."""

from __future__ import annotations

import torch

from reflame_core.render.backends import torch_antialias, torch_raster, torch_shading
from reflame_core.render.backends.topology import edge_opposites


class TorchBackend:
    """nvdiffrast-compatible primitives in plain PyTorch (CPU or GPU); see the modules
    ``torch_raster``, ``torch_shading``, ``torch_antialias`` for the algorithms."""

    name = "torch"

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor,
                  resolution: tuple[int, int]) -> torch.Tensor:
        """[B,V,4], [F,3] int32, (H,W) -> rast [B,H,W,4] (u, v, z/w, tri_id+1)."""
        return torch_raster.rasterize(pos_clip, tri, resolution)

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor,
                    tri: torch.Tensor) -> torch.Tensor:
        """[V,C] | [B|1,V,C], rast, [F,3] -> [B,H,W,C]."""
        return torch_shading.interpolate(attr, rast, tri)

    def texture(self, tex: torch.Tensor, uv: torch.Tensor,
                boundary_mode: str = "wrap") -> torch.Tensor:
        """[B|1,Ht,Wt,C], [B,H,W,2] -> [B,H,W,C], bilinear."""
        return torch_shading.texture(tex, uv, boundary_mode)

    def topology(self, tri: torch.Tensor) -> torch.Tensor:
        """Reusable per-mesh data for ``antialias`` (edge opposites [F,3])."""
        return edge_opposites(tri.to(self.device))

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, pos_clip: torch.Tensor,
                  tri: torch.Tensor, topology: torch.Tensor | None = None) -> torch.Tensor:
        """[B,H,W,C] -> [B,H,W,C] with analytic silhouette blending."""
        return torch_antialias.antialias(color, rast, pos_clip, tri, topology)
