"""The edges of a triangle mesh."""

from __future__ import annotations

import torch


def mesh_edges(faces: torch.Tensor) -> torch.Tensor:
    """(E,2) int64 unique undirected edges ``(i, j)``, ``i < j``, sorted, of the mesh with
    triangles ``faces`` (F,3) int64, on the faces' device."""
    ii = faces[:, [0, 1, 2]].reshape(-1)
    jj = faces[:, [1, 2, 0]].reshape(-1)
    lo, hi = torch.minimum(ii, jj), torch.maximum(ii, jj)
    # Flat keys lo * n + hi: a 1-D unique sorts and de-duplicates at once (a unique over
    # index pairs, dim=0, is many times slower on large meshes).
    n = int(faces.max()) + 1 if faces.numel() else 1
    keys = (lo * n + hi).unique()
    return torch.stack([keys // n, keys % n], 1)
