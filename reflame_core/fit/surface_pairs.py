"""Template vertices paired with their nearest scan samples, for the ICP stages (affine,
lattice): pairs too far apart, facing away from each other or among the worst are left out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.losses import nearest, vertex_normals_torch
from reflame_core.geometry.axis_scale import trimmed

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession


def surface_pairs(
    session: FitSession, points: np.ndarray, use: np.ndarray, p: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each template vertex at ``points`` (V,3, canonical frame) paired with its nearest scan
    sample (``session.targets``, which must be built).

    Kept: vertices in ``use`` (V,) bool within ``p["max_distance"]`` of their sample, whose
    normals agree with the sample's by more than ``p["min_normal_cos"]``, and not among the
    worst ``p["trim"]`` by distance to the sample's tangent plane.

    Returns:
        keep (V,) bool; samples (V,3) and their unit normals (V,3); plane (V,) the distance
        of each vertex to its sample's tangent plane (canonical units).
    """
    t = session.targets
    # The fitting loop's nearest samples: its k-d tree on a CPU, brute force on a GPU
    # (a tree built there every iteration, and scipy loaded for it, cost 0.7 s a fit).
    query = torch.as_tensor(points, dtype=torch.float32, device=t.samples.device)
    idx = nearest(query, t.samples, t.sample_tree).cpu().numpy()
    samples = t.samples.cpu().numpy().astype(np.float64)[idx]
    normals = t.sample_normals.cpu().numpy().astype(np.float64)[idx]
    dist = np.linalg.norm(points - samples, axis=1)
    fit_normals = vertex_normals_torch(
        torch.from_numpy(np.asarray(points, np.float32)), session.faces.cpu()
    ).numpy()
    keep = (
        use
        & (dist < float(p["max_distance"]))
        & ((fit_normals * normals).sum(1) > float(p["min_normal_cos"]))
    )
    plane = np.abs(((points - samples) * normals).sum(1))
    return trimmed(plane, keep, float(p["trim"])), samples, normals, plane
