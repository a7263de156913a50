"""Facial expression: an open jaw, a smile or a frown, raised brows, and the mouth's inside.

Scan sets are full of expressions (FaceScape has twenty per subject), and a FLAME fit must
follow them: the lips part, the chin drops and swings back. FLAME opens its jaw by skinning:
the lower face turns about a joint in front of the ears, weighted from 1 on the chin to 0
above the mouth. Here the weight is a harmonic field on the template's own mesh, fixed on the
lips by which rim of FLAME's mouth hole (behind the lips) each lip vertex is nearer along the
surface, so the lips part where they touch instead of stretching.

An expression belongs to the subject, not to the scan: it deforms the template before the
scan is remeshed from it (``make_synthetic_head(expression=...)``), so the truth stays exact
where the lips touched. Lengths are fractions of head height, in the template frame (+y up,
+z forward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.sparse.linalg import spsolve

from reflame_core.assets.flame import LandmarkEmbedding
from reflame_core.geometry.edges import boundary_loops
from reflame_core.synthetic.head import SyntheticHead, gaussian_bumps
from reflame_core.synthetic.partial import _height, _with_shell
from reflame_core.synthetic.truth import canonical_vertices

# iBUG indices.
JAW_LINE, CHIN, NOSE_BASE, LIPS = slice(4, 13), 8, 33, slice(48, 68)
MOUTH_CORNERS, INNER_LIPS, BROW_MIDDLES = [48, 54], slice(60, 68), [19, 24]
# Jaw opening, degrees, on two heads in three (the rest smile or frown with closed lips).
JAW_DEG = (4.0, 20.0)
# The jaw's joint: below and behind the outer contour's top points (iBUG 0 and 16, in front
# of the ears) by these fractions of head height.
JOINT_BELOW, JOINT_BEHIND = 0.03, 0.03
# Lip vertices: within this of a lip landmark. Across this difference of their distances
# along the surface to the two rims, their weight goes from the skull's to the jaw's.
LIP_RADIUS, LIP_BLEND = 0.08, 0.02
# The mouth's corners (iBUG 48, 54, 60, 64): within this of them, no path between the rims.
CORNERS, CORNER_RADIUS = [48, 54, 60, 64], 0.04
# Mouth corners move up (a smile) or down (a frown) by up to this, and back by half of it.
SMILE = 0.03
# Brows rise by up to this.
BROW_RAISE = 0.02
# The open mouth's inside: dark red, closed by a cone this deep behind the lips' rim.
MOUTH_COLOUR = np.array([70, 25, 30])
MOUTH_DEPTH = 0.06


@dataclass(frozen=True)
class Expression:
    """One face's expression.

    Attributes:
        jaw_deg: jaw opening, degrees (0: closed).
        corners: the mouth corners' rise, fraction of head height (negative: a frown).
        brows: the brows' rise, fraction of head height.
        mouth_inside: an open mouth shows a dark cavity (else nothing: a hole).
    """

    jaw_deg: float
    corners: float
    brows: float
    mouth_inside: bool

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Expression:
        """The jaw open by 4-20 degrees on two heads in three, the corners raised or lowered
        by up to 3% of head height, the brows raised by up to 2%; an open mouth shows its
        dark inside on two heads in three (scanners see a cavity there, or nothing)."""
        jaw = rng.uniform(*JAW_DEG) if rng.random() < 2 / 3 else 0.0
        return cls(jaw_deg=jaw, corners=rng.uniform(-0.5, 1.0) * SMILE,
                   brows=rng.uniform(0.0, 1.0) * BROW_RAISE,
                   mouth_inside=jaw > 0 and rng.random() < 2 / 3)

    def deformation(self, faces: np.ndarray, embedding: LandmarkEmbedding
                    ) -> Callable[[np.ndarray], np.ndarray]:
        """``vertices (5023,3) -> vertices (5023,3)``: FLAME vertices (template frame, on
        FLAME's ``faces`` (F,3)) with this expression."""
        return lambda vertices: express(vertices, faces, embedding, self)


def express(vertices: np.ndarray, faces: np.ndarray, embedding: LandmarkEmbedding,
            expression: Expression) -> np.ndarray:
    """(5023,3) float64 FLAME ``vertices`` (template frame) with ``expression``: the jaw
    turned about the x axis through its joint, each vertex by ``jaw_weights``; then the mouth
    corners and brows moved by Gaussian bumps (6% and 8% of head height wide)."""
    v = np.asarray(vertices, np.float64)
    lmk = embedding.points(v, faces)
    height = float(np.ptp(v[:, 1]))
    if expression.jaw_deg:
        joint = lmk[[0, 16]].mean(0) - np.array([0.0, JOINT_BELOW, JOINT_BEHIND]) * height
        # About +x by a positive angle: the chin, below and in front of the joint, goes down
        # and back.
        t = np.deg2rad(expression.jaw_deg * jaw_weights(v, faces, lmk))
        d = v - joint
        v = v.copy()
        v[:, 1] = joint[1] + d[:, 1] * np.cos(t) - d[:, 2] * np.sin(t)
        v[:, 2] = joint[2] + d[:, 1] * np.sin(t) + d[:, 2] * np.cos(t)
    corner = expression.corners * height
    centres = lmk[MOUTH_CORNERS + BROW_MIDDLES]
    sigmas = np.array([0.06, 0.06, 0.08, 0.08]) * height
    dirs = np.array([[0.0, corner, -0.5 * abs(corner)]] * 2
                    + [[0.0, expression.brows * height, 0.0]] * 2)
    return v + gaussian_bumps(v, centres, sigmas, dirs)


def jaw_weights(vertices: np.ndarray, faces: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(V,) float64 in [0, 1] per vertex of FLAME's mesh (``vertices`` (V,3), ``faces``
    (F,3), its 68 ``landmarks`` (68,3)): 1 where the jaw carries it, 0 where the skull does.

    Fixed on the lips (within ``LIP_RADIUS`` of a lip landmark): by which of the mouth hole's
    rims is nearer along the surface, blended over ``LIP_BLEND`` at the corners. Fixed to 1
    on the jaw line and chin (within 6% of head height of iBUG 4-12); to 0 above the nose's
    base (the eyeballs too), behind the jaw's angles and at the base of the neck. Harmonic
    (uniform graph Laplacian) everywhere else.
    """
    v = np.asarray(vertices, np.float64)
    height = float(np.ptp(v[:, 1]))
    n = len(v)
    edges = np.unique(np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), 1), axis=0)
    i = np.concatenate([edges[:, 0], edges[:, 1]])
    j = np.concatenate([edges[:, 1], edges[:, 0]])
    length = np.linalg.norm(v[i] - v[j], axis=1)
    graph = coo_matrix((length, (i, j)), shape=(n, n)).tocsr()

    fixed = np.full(n, np.nan)
    near_jaw = np.linalg.norm(v[:, None] - landmarks[None, JAW_LINE], axis=2).min(1)
    fixed[near_jaw < 0.06 * height] = 1
    upper, lower = mouth_rims(v, faces, landmarks[INNER_LIPS].mean(0))
    # Paths between the rims around the mouth corners would make the outer lower lip (a long
    # way round its inner side to its own rim) as near the upper rim as the lower: the
    # corners are taken out, and left to the harmonic fill.
    corners = np.linalg.norm(v[:, None] - landmarks[None, CORNERS], axis=2).min(1)
    corners = corners < CORNER_RADIUS * height
    keep = ~corners[i] & ~corners[j]
    graph = coo_matrix((length[keep], (i[keep], j[keep])), shape=(n, n)).tocsr()
    lips = np.linalg.norm(v[:, None] - landmarks[None, LIPS], axis=2).min(1) < LIP_RADIUS * height
    lips = np.flatnonzero(lips & ~corners)
    to_upper = dijkstra(graph, indices=upper, min_only=True)[lips]
    to_lower = dijkstra(graph, indices=lower, min_only=True)[lips]
    fixed[lips] = np.clip(0.5 + (to_upper - to_lower) / (LIP_BLEND * height), 0.0, 1.0)
    fixed[upper], fixed[lower] = 0, 1
    # The skull last: it overrides the lips' blend at the cheeks above the corners.
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
    """Vertex indices of the mouth hole's upper and lower rims on a mesh (``vertices``
    (V,3) in the template frame, ``faces`` (F,3)): the open rim nearest ``lips`` (3,), split
    by the line through its two sideways extremes."""
    v = np.asarray(vertices, np.float64)
    loops = boundary_loops(faces)
    if not loops:
        raise ValueError("the mesh has no open rim: FLAME's mouth is a hole behind the lips")
    loop = min(loops, key=lambda ids: np.linalg.norm(v[ids].mean(0) - lips))
    left, right = v[loop[np.argmin(v[loop, 0])]], v[loop[np.argmax(v[loop, 0])]]
    t = (v[loop, 0] - left[0]) / (right[0] - left[0])
    above = v[loop, 1] > left[1] + t * (right[1] - left[1])
    return loop[above], loop[~above]


def mouth_gap(head: SyntheticHead) -> float:
    """The gap between the inner lips' middles (iBUG 62 and 66), template units."""
    lmk = head.to_canonical.apply(head.true_landmarks)
    return float(np.linalg.norm(lmk[62] - lmk[66]))


def fill_mouth(head: SyntheticHead) -> SyntheticHead:
    """The open mouth closed by a dark cone from the mouth hole's rim to a point
    ``MOUTH_DEPTH`` of head height behind the rim's centre: the cavity a scanner sees
    between parted lips. The truth is unchanged."""
    v = canonical_vertices(head)
    lips = head.to_canonical.apply(head.true_landmarks)[INNER_LIPS].mean(0)
    rim = np.concatenate(mouth_rims(v, head.scan.faces, lips))
    centre = v[rim].mean(0)
    # Around the rim in order: by angle about its centre, seen from the front.
    rim = rim[np.argsort(np.arctan2(v[rim, 1] - centre[1], v[rim, 0] - centre[0]))]
    apex = centre - np.array([0.0, 0.0, MOUTH_DEPTH * _height(head)])
    k = len(rim)
    cone = np.stack([np.arange(k), (np.arange(k) + 1) % k, np.full(k, k)], 1)
    return _with_shell(head, np.concatenate([v[rim], apex[None]]), cone, MOUTH_COLOUR)
