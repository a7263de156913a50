"""FLAME's jaw: which vertices it carries, and turning it about its joint.

FLAME opens its jaw by skinning: the lower face turns about a joint in front of the ears,
each vertex by its weight, from 1 on the chin to 0 above the mouth. Those weights come with
the FLAME model file, which a fit does not need; here they are derived from the template's
topology instead. FLAME's mouth is a hole behind the lips, so the lips split along it: a lip
vertex goes with the rim of the hole that is nearer along the surface, and the lips part
where they touch instead of stretching. Lengths are fractions of head height; points are in
the template frame (+x the subject's left, +y up, +z forward).
"""

from __future__ import annotations

import numpy as np
import torch

from reflame_core.geometry.edges import boundary_loops, mesh_edges
from reflame_core.landmarks.definitions import landmark_definitions

# iBUG indices (the lips' as a whole: ``landmark_definitions().indices("lips")``).
JAW_LINE, CHIN, NOSE_BASE, INNER_LIPS = slice(4, 13), 8, 33, slice(60, 68)
# The mouth's corners (outer and inner): within CORNER_RADIUS of them no path joins the rims.
CORNERS, CORNER_RADIUS = [48, 54, 60, 64], 0.04
# Lip vertices: within LIP_RADIUS of a lip landmark. Across LIP_BLEND of difference between
# their distances along the surface to the two rims, they go from the skull to the jaw.
LIP_RADIUS, LIP_BLEND = 0.08, 0.02
# iBUG inner lips' middles (upper, lower) and outer eye corners: an open mouth is one whose
# inner lips lie more than OPEN_GAP of the eye corners' span apart.
UPPER_INNER, LOWER_INNER, EYE_CORNERS = [61, 62, 63], [65, 66, 67], [36, 45]
OPEN_GAP = 0.1
# The joint: below and behind the outer contour's top points (iBUG 0 and 16, in front of the
# ears) by these fractions of head height.
JOINT_BELOW, JOINT_BEHIND = 0.03, 0.03


def jaw_weights(vertices: np.ndarray, faces: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(V,) float64 in [0, 1] per vertex of FLAME's mesh (``vertices`` (V,3) template frame,
    ``faces`` (F,3), its 68 ``landmarks`` (68,3)): 1 where the jaw carries it, 0 where the
    skull does.

    Fixed on the lips (within ``LIP_RADIUS`` of a lip landmark, away from the corners) by
    which rim of the mouth hole is nearer along the surface; to 1 on the jaw line and chin
    (within 6% of head height of iBUG 4-12); to 0 above the nose's base (the eyeballs too),
    behind the jaw's angles and at the base of the neck. Harmonic (uniform graph Laplacian)
    everywhere else, the corners included.
    """
    # Here, not at the top: a fit loads scipy only for an open mouth (it costs a GPU fit
    # 0.7 s, see fit/stages/affine.py).
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra
    from scipy.sparse.linalg import spsolve

    v = np.asarray(vertices, np.float64)
    height = float(np.ptp(v[:, 1]))
    n = len(v)
    edges = mesh_edges(torch.as_tensor(np.asarray(faces, np.int64))).numpy()
    i = np.concatenate([edges[:, 0], edges[:, 1]])
    j = np.concatenate([edges[:, 1], edges[:, 0]])

    fixed = np.full(n, np.nan)
    near_jaw = np.linalg.norm(v[:, None] - landmarks[None, JAW_LINE], axis=2).min(1)
    fixed[near_jaw < 0.06 * height] = 1
    upper, lower = mouth_rims(v, faces, landmarks[INNER_LIPS].mean(0))
    # Paths round the corners would make the outer lower lip (a long way round its inner
    # side to its own rim) as near the upper rim as the lower: the corners are taken out.
    corner = np.linalg.norm(v[:, None] - landmarks[None, CORNERS], axis=2).min(1)
    corner = corner < CORNER_RADIUS * height
    keep = ~corner[i] & ~corner[j]
    graph = coo_matrix((np.linalg.norm(v[i[keep]] - v[j[keep]], axis=1), (i[keep], j[keep])),
                       shape=(n, n)).tocsr()
    lip_landmarks = landmarks[landmark_definitions().indices("lips")]
    lips = np.linalg.norm(v[:, None] - lip_landmarks[None], axis=2).min(1) < LIP_RADIUS * height
    lips = np.flatnonzero(lips & ~corner)
    to_upper = dijkstra(graph, indices=upper, min_only=True)[lips]
    to_lower = dijkstra(graph, indices=lower, min_only=True)[lips]
    fixed[lips] = np.clip(0.5 + (to_upper - to_lower) / (LIP_BLEND * height), 0.0, 1.0)
    fixed[upper], fixed[lower] = 0, 1
    # The skull last: it overrides the lips' blend on the cheeks above the corners.
    behind = v[:, 2] < landmarks[[4, 12], 2].mean() - 0.1 * height
    below = v[:, 1] < landmarks[CHIN, 1] - 0.3 * height
    fixed[(v[:, 1] > landmarks[NOSE_BASE, 1]) | behind | below] = 0

    adjacency = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    degree = coo_matrix((np.asarray(adjacency.sum(1)).ravel(), (np.arange(n), np.arange(n))),
                        shape=(n, n)).tocsr()
    laplacian = degree - adjacency
    free = np.flatnonzero(np.isnan(fixed))
    known = np.flatnonzero(~np.isnan(fixed))
    a = laplacian[free][:, free].tolil()
    # A part with no fixed vertex would make the system singular: a tiny pull to 0 keeps it
    # solvable and moves no vertex that is connected to a fixed one.
    a.setdiag(a.diagonal() + 1e-9)
    weights = fixed.copy()
    weights[free] = spsolve(a.tocsr(), -laplacian[free][:, known] @ fixed[known])
    return np.clip(weights, 0.0, 1.0)


def mouth_rims(vertices: np.ndarray, faces: np.ndarray, lips: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Vertex indices of the mouth hole's upper and lower rims on a mesh (``vertices`` (V,3)
    template frame, ``faces`` (F,3)): the open rim nearest ``lips`` (3,), split by the line
    through its two sideways extremes."""
    v = np.asarray(vertices, np.float64)
    loops = boundary_loops(faces)
    if not loops:
        raise ValueError("the mesh has no open rim: FLAME's mouth is a hole behind the lips")
    loop = min(loops, key=lambda ids: np.linalg.norm(v[ids].mean(0) - lips))
    left, right = v[loop[np.argmin(v[loop, 0])]], v[loop[np.argmax(v[loop, 0])]]
    t = (v[loop, 0] - left[0]) / (right[0] - left[0])
    above = v[loop, 1] > left[1] + t * (right[1] - left[1])
    return loop[above], loop[~above]


def lips_gap(indices: np.ndarray, points: np.ndarray) -> float | None:
    """The gap between the inner lips (the mean of iBUG 61-63 to that of 65-67) over the span
    of the outer eye corners (36, 45), from landmarks ``points`` (L,3) with iBUG ``indices``
    (L,); None where any of those landmarks is missing."""
    where = {int(i): k for k, i in enumerate(indices)}
    needed = UPPER_INNER + LOWER_INNER + EYE_CORNERS
    if not all(i in where for i in needed):
        return None
    p = {i: np.asarray(points[where[i]], np.float64) for i in needed}
    upper = np.mean([p[i] for i in UPPER_INNER], 0)
    lower = np.mean([p[i] for i in LOWER_INNER], 0)
    span = np.linalg.norm(p[EYE_CORNERS[0]] - p[EYE_CORNERS[1]])
    return float(np.linalg.norm(upper - lower) / span) if span > 0 else None


def jaw_joint(landmarks: np.ndarray, height: float, below: float = JOINT_BELOW,
              behind: float = JOINT_BEHIND) -> np.ndarray:
    """(3,) the jaw's joint (template frame): ``below`` and ``behind`` (fractions of
    ``height``) the middle of iBUG 0 and 16 (68,3)."""
    return landmarks[[0, 16]].mean(0) - np.array([0.0, below, behind]) * height


def turn_jaw(points: np.ndarray, weights: np.ndarray, joint: np.ndarray, degrees: float
             ) -> np.ndarray:
    """(N,3) ``points`` (template frame) turned about the x axis through ``joint`` (3,) by
    ``degrees`` times their ``weights`` (N,). Positive opens: the chin, below and in front
    of the joint, goes down and back."""
    t = np.deg2rad(degrees * np.asarray(weights, np.float64))
    d = np.asarray(points, np.float64) - joint
    out = np.array(points, np.float64)
    out[:, 1] = joint[1] + d[:, 1] * np.cos(t) - d[:, 2] * np.sin(t)
    out[:, 2] = joint[2] + d[:, 1] * np.sin(t) + d[:, 2] * np.cos(t)
    return out
