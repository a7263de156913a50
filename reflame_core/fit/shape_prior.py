"""A prior that keeps the deformed template close in shape to where the deformation started.

Where the scan says little (the scalp, the neck, behind the ears) the surface terms only hold
each vertex to the scan's tangent plane: nothing stops it sliding along the surface. The
``stretch`` term measures how the template's shape has changed since the deformation began
(the rigid and affine stages' template, ``reference``): the relative change of every edge's
length, as-rigid-as-possible in its simplest form (no rotations to solve, since the rigid
stage has already turned the template), so that vertices move together with their
neighbours rather than slide apart. (A Laplacian-of-displacement term was measured too and
changed nothing; see benchmarks/RESULTS.md.)

Where the scan has no surface at all (cut away, a hole, the back of a front-only scan) the
data terms pull the template only at the rim: the deformation stages weigh the edges of
those vertices (``unsupported``) more, so that they hold their shape harder than the ones
the scan covers.
"""

from __future__ import annotations

import torch

from reflame_core.fit.losses import nearest
from reflame_core.geometry.edges import mesh_edges


class ShapePrior:
    """Shape change relative to ``reference`` (V,3) on the mesh ``faces`` (F,3).

    ``active`` (V,) bool selects the edges that count: the eyeballs, which the eyeball stage
    places, are left out. ``vertex_weight`` (V,) weighs each edge by the mean of its two
    ends; 1 everywhere by default.
    """

    def __init__(self, reference: torch.Tensor, faces: torch.Tensor, active: torch.Tensor,
                 vertex_weight: torch.Tensor | None = None):
        ref = reference.detach()
        v = len(ref)
        edges = mesh_edges(faces)
        self.edges = edges[active[edges[:, 0]] & active[edges[:, 1]]]
        self.rest = (ref[self.edges[:, 0]] - ref[self.edges[:, 1]]).norm(dim=-1).clamp_min(1e-9)
        weight = torch.ones(v, device=ref.device) if vertex_weight is None else vertex_weight
        self.edge_weight = 0.5 * (weight[self.edges[:, 0]] + weight[self.edges[:, 1]])

    def stretch(self, verts: torch.Tensor) -> torch.Tensor:
        """Mean squared relative change of the edge lengths."""
        length = (verts[self.edges[:, 0]] - verts[self.edges[:, 1]]).norm(dim=-1)
        return ((length / self.rest - 1.0) ** 2 * self.edge_weight).mean()


def unsupported(vertices: torch.Tensor, samples: torch.Tensor, distance: float) -> torch.Tensor:
    """(V,) bool: vertices (V,3) farther than ``distance`` from every scan sample (S,3)."""
    idx = nearest(vertices, samples)
    return (vertices - samples[idx]).norm(dim=-1) > distance
