"""Facial expression: an open jaw, a smile or a frown, raised brows, and the mouth's inside.

Scan sets are full of expressions (FaceScape has twenty per subject), and a FLAME fit must
follow them: the lips part, the chin drops and swings back. The jaw turns as FLAME's does,
about a joint in front of the ears with skinning weights (``fit/jaw.py``), but each head's
joint lies elsewhere and its weights are sharpened or softened (a power of them), so a fit
that models the jaw meets a jaw it does not model exactly, as on a real scan.

An expression belongs to the subject, not to the scan: it deforms the template before the
scan is remeshed from it (``make_synthetic_head(expression=...)``), so the truth stays exact
where the lips touched. Lengths are fractions of head height, in the template frame (+y up,
+z forward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reflame_core.assets.flame import LandmarkEmbedding
from reflame_core.fit.jaw import INNER_LIPS, jaw_joint, jaw_weights, mouth_rims, turn_jaw
from reflame_core.synthetic.head import SyntheticHead, gaussian_bumps
from reflame_core.synthetic.partial import _height, _with_shell
from reflame_core.synthetic.truth import canonical_vertices

# iBUG indices.
MOUTH_CORNERS, BROW_MIDDLES = [48, 54], [19, 24]
# Jaw opening, degrees, on two heads in three (the rest smile or frown with closed lips).
JAW_DEG = (4.0, 20.0)
# The joint lies this far (fractions of head height) below and behind iBUG 0 and 16.
JOINT_BELOW, JOINT_BEHIND = (0.0, 0.08), (-0.02, 0.08)
# The skinning weights are raised to a power drawn log-uniformly from this range.
WEIGHT_POWER = (0.6, 1.6)
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
        joint_below, joint_behind: where the jaw's joint lies (``fit/jaw.py: jaw_joint``).
        weight_power: the jaw's skinning weights are raised to this power.
    """

    jaw_deg: float
    corners: float
    brows: float
    mouth_inside: bool
    joint_below: float = 0.03
    joint_behind: float = 0.03
    weight_power: float = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Expression:
        """The jaw open by 4-20 degrees on two heads in three, about a joint 0-8% of head
        height below and -2-8% behind iBUG 0 and 16, its weights to a power of 0.6-1.6; the
        corners raised or lowered by up to 3% of head height, the brows raised by up to 2%;
        an open mouth shows its dark inside on two heads in three (scanners see a cavity
        there, or nothing)."""
        jaw = rng.uniform(*JAW_DEG) if rng.random() < 2 / 3 else 0.0
        return cls(jaw_deg=jaw, corners=rng.uniform(-0.5, 1.0) * SMILE,
                   brows=rng.uniform(0.0, 1.0) * BROW_RAISE,
                   mouth_inside=jaw > 0 and rng.random() < 2 / 3,
                   joint_below=rng.uniform(*JOINT_BELOW), joint_behind=rng.uniform(*JOINT_BEHIND),
                   weight_power=float(np.exp(rng.uniform(*np.log(WEIGHT_POWER)))))

    def deformation(self, faces: np.ndarray, embedding: LandmarkEmbedding
                    ) -> Callable[[np.ndarray], np.ndarray]:
        """``vertices (5023,3) -> vertices (5023,3)``: FLAME vertices (template frame, on
        FLAME's ``faces`` (F,3)) with this expression."""
        return lambda vertices: express(vertices, faces, embedding, self)


def express(vertices: np.ndarray, faces: np.ndarray, embedding: LandmarkEmbedding,
            expression: Expression) -> np.ndarray:
    """(5023,3) float64 FLAME ``vertices`` (template frame) with ``expression``: the jaw
    turned about its joint, each vertex by its skinning weight to ``weight_power``; then the
    mouth corners and brows moved by Gaussian bumps (6% and 8% of head height wide)."""
    v = np.asarray(vertices, np.float64)
    lmk = embedding.points(v, faces)
    height = float(np.ptp(v[:, 1]))
    if expression.jaw_deg:
        weights = jaw_weights(v, faces, lmk) ** expression.weight_power
        joint = jaw_joint(lmk, height, expression.joint_below, expression.joint_behind)
        v = turn_jaw(v, weights, joint, expression.jaw_deg)
    corner = expression.corners * height
    centres = lmk[MOUTH_CORNERS + BROW_MIDDLES]
    sigmas = np.array([0.06, 0.06, 0.08, 0.08]) * height
    dirs = np.array([[0.0, corner, -0.5 * abs(corner)]] * 2
                    + [[0.0, expression.brows * height, 0.0]] * 2)
    return v + gaussian_bumps(v, centres, sigmas, dirs)


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
