"""The edges of a triangle mesh."""

from __future__ import annotations

import numpy as np
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


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The vertex sets (each (K,) int64, sorted) of the open rims of the mesh with triangles
    ``faces`` (F,3): the connected components of the edges only one triangle uses."""
    edges = np.sort(np.asarray(faces)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, count = np.unique(edges, axis=0, return_counts=True)
    rim = unique[count == 1]
    parent = {int(v): int(v) for v in np.unique(rim)}

    def root(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in rim:
        parent[root(int(a))] = root(int(b))
    groups: dict[int, list[int]] = {}
    for v in parent:
        groups.setdefault(root(v), []).append(v)
    return [np.array(sorted(g), np.int64) for g in groups.values()]
