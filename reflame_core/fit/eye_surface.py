"""The part of an eyeball a scan shows (the cap between the lids), and how far the scan's eye
surface says a placed eyeball should move.

An eyeball placed from its socket sits where the fitted lids and brow say; the scan's own eye
surface, where it shows between the lids, says more directly where the eyeball's front is.
"""

from __future__ import annotations

import numpy as np

from reflame_core.geometry.surface_query import MeshQuery, ray_triangle_distances

# Damping of ``cap_shift``'s solve, next to the cap's point-to-plane term (whose directions
# weigh about 0.9 / 0.07 / 0.02 across depth / sideways / up for FLAME's cap): it holds the
# directions the cap barely sees near the socket's placement.
DAMPING = 0.01
# Share of the cap that must find the scan's surface to start moving it (``cap_shift``).
MIN_START_MATCHED = 0.2


def exposed_cap(vertices: np.ndarray, ball: slice, head_faces: np.ndarray) -> np.ndarray:
    """(n,) bool over the eyeball's vertices ``vertices[ball]``: True where the ray from the
    eyeball's centre through the vertex points forward (+z) and leaves the head without
    crossing it (``head_faces`` (F,3), the faces that are not eyeball): the part seen between
    the lids. (Forward only: FLAME's head is open at the neck, and rays from the back of the
    eyeball leave through it.)

    Args:
        vertices: (V,3) the mesh (the template, canonical frame: up +y, front +z).
        ball: the eyeball's vertex range.
    """
    v = np.asarray(vertices, np.float64)
    pts = v[ball]
    centre = pts.mean(0)
    radius = float(np.linalg.norm(pts - centre, axis=1).mean())
    dirs = (pts - centre) / np.linalg.norm(pts - centre, axis=1, keepdims=True)
    tri = v[np.asarray(head_faces)]
    # Only faces in front of the eye and near it can cover it (the nose at most ~5 radii off).
    ahead = tri.mean(1)
    tri = tri[(ahead[:, 2] > centre[2]) & (np.linalg.norm(ahead - centre, axis=1) < 8 * radius)]
    exposed = dirs[:, 2] > 0
    rays = np.flatnonzero(exposed)
    for start in range(0, len(rays), 32):  # (32,F) temporaries stay small
        i = rays[start:start + 32]
        exposed[i] = ~np.isfinite(ray_triangle_distances(pts[i], dirs[i], tri)).any(1)
    return exposed


def cap_shift(
    cap: np.ndarray,
    centre: np.ndarray,
    scan: MeshQuery,
    *,
    max_shift: float,
    max_residual: float,
    iterations: int = 5,
    trim: float = 0.2,
    min_cos: float = 0.5,
    min_matched: float = 0.6,
) -> np.ndarray | None:
    """(3,) translation that lays the eyeball's exposed ``cap`` (n,3) on the scan's eye
    surface, or None where the scan does not show that surface clearly: once moved, under
    ``min_matched`` of the cap finds a surface within ``max_shift`` facing the same way (eyes
    closed, a hole, hair), or the cap ends with a median distance over ``max_residual``
    (the lids or a hole's rim matched instead of an eye, or a surface too noisy to place it).

    Point-to-plane ICP on translation only. The cap fixes how deep the eyeball sits well, its
    sideways place less so, and its height hardly at all (the cap is a narrow band): a small
    damping toward no shift keeps those last directions near where the socket put them, where
    scanner noise or a hole's rim would otherwise slide the eyeball. The worst ``trim`` of the
    pairs is left out of each iteration (lid edges), and the shift stays within
    ``max_shift``.

    Args:
        cap: (n,3) the exposed vertices of the placed eyeball.
        centre: (3,) its centre; the cap's normals point away from it.
        scan: the scan's surface near the eyes.
        max_shift, max_residual: lengths in the units of ``cap``.
    """
    normals = cap - centre
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    shift = np.zeros(3)
    for i in range(iterations + 1):
        hits = scan.closest(cap + shift)
        facing = (scan.face_normals[hits.face] * normals).sum(1)
        keep = (hits.distance < max_shift) & (facing > min_cos)
        # The cap may start well behind the scan's eye, its rim pairing with the lids; what
        # must match is where it ends.
        if keep.mean() < (min_matched if i == iterations else MIN_START_MATCHED):
            return None
        resid = hits.distance[keep]
        if i == iterations:
            return shift if np.median(resid) <= max_residual else None
        keep[np.flatnonzero(keep)[resid > np.quantile(resid, 1.0 - trim)]] = False
        m = scan.face_normals[hits.face[keep]].astype(np.float64)
        gap = (hits.points[keep] - cap[keep] - shift).astype(np.float64)  # move to close it
        damping = DAMPING * len(m)
        a = m.T @ m + damping * np.eye(3)
        shift = shift + np.linalg.solve(a, m.T @ (gap * m).sum(1) - damping * shift)
        length = float(np.linalg.norm(shift))
        if length > max_shift:
            shift *= max_shift / length
    return shift
