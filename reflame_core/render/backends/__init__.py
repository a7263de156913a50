"""Rasterization backends exposing nvdiffrast's four primitives with identical conventions.

Every backend has ``rasterize(pos_clip [B,V,4], tri [F,3] int32, (H,W)) -> rast [B,H,W,4]``,
``interpolate(attr, rast, tri) -> [B,H,W,C]``, ``texture(tex [B|1,Ht,Wt,C], uv [B,H,W,2])``,
``topology(tri)`` (per-mesh data for antialias, optional) and
``antialias(color, rast, pos_clip, tri, topology=None)``; rast row 0 is clip y = -1.
"""

from __future__ import annotations

import torch

from reflame_core.render.backends.nvdiffrast_backend import (
    BackendUnavailableError,
    NvdiffrastBackend,
)
from reflame_core.render.backends.torch_backend import TorchBackend

__all__ = ["BackendUnavailableError", "NvdiffrastBackend", "TorchBackend", "get_backend"]


def get_backend(name: str = "auto", device: str | torch.device = "cpu"):
    """A backend instance for ``device``.

    "auto": nvdiffrast on a CUDA device when its plugin loads, else the torch backend.
    "nvdiffrast": raises BackendUnavailableError with the reason when it cannot run.
    "torch": always available.
    """
    device = torch.device(device)
    if name == "torch":
        return TorchBackend(device)
    if name == "nvdiffrast":
        return NvdiffrastBackend(device)
    if name == "auto":
        if device.type == "cuda":
            try:
                return NvdiffrastBackend(device)
            except BackendUnavailableError:
                pass
        return TorchBackend(device)
    raise ValueError(f"unknown render backend {name!r}; use 'auto', 'nvdiffrast' or 'torch'")
