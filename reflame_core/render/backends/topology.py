"""Edge adjacency used by the silhouette antialiasing."""

from __future__ import annotations

import torch


def edge_opposites(tri: torch.Tensor) -> torch.Tensor:
    """For each triangle edge, the opposite vertex of the triangle across that edge.

    Edge i of triangle f joins corners (i+1)%3 and (i+2)%3 (it faces corner i).

    Args:
        tri: [F,3] int vertex indices.
    Returns:
        [F,3] int64: vertex index of the neighbour's third corner, or -1 on boundary edges.
        Non-manifold edges (3+ triangles) pair neighbours in sorted order, as any choice is as
        good for silhouette tests.
    """
    tri = tri.to(torch.int64)
    num_faces = tri.shape[0]
    a = tri[:, [1, 2, 0]].reshape(-1)
    b = tri[:, [2, 0, 1]].reshape(-1)
    own = tri.reshape(-1)  # corner i faces edge i
    num_v = int(tri.max()) + 1 if tri.numel() else 1
    key = torch.minimum(a, b) * num_v + torch.maximum(a, b)
    order = torch.argsort(key, stable=True)
    same = torch.nonzero(key[order[1:]] == key[order[:-1]]).squeeze(1)
    first, second = order[same], order[same + 1]
    opp = torch.full((3 * num_faces,), -1, dtype=torch.int64, device=tri.device)
    opp[first] = own[second]
    opp[second] = own[first]
    return opp.view(num_faces, 3)
