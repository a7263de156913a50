"""FLAME regions (face, ears, scalp, neck, eyeballs) as per-vertex labels and weights.

FLAME's own region masks are a separate download, so the regions are derived here from the
template's geometry in the canonical frame and from its landmarks. The thresholds below are in
template units (head about 3.2 tall) and were chosen by inspecting the FLAME2023 template.
"""

from __future__ import annotations

import numpy as np

from reflame_core.assets.flame import FlameTemplate, LandmarkEmbedding

REGIONS = ("face", "ears", "scalp", "neck", "eyeballs")

# FLAME orders its eyeball vertices last: two 546-vertex spheres. The first lies at +x (the
# subject's left eye, iBUG landmarks 42-47), the second at -x (right eye, landmarks 36-41).
LEFT_EYEBALL = slice(3931, 4477)
RIGHT_EYEBALL = slice(4477, 5023)

# Forehead height above the brows that still counts as face (hairline), template units.
_FOREHEAD = 0.45
# Ears stick out sideways past this fraction of the outer contour landmarks' |x|.
_EAR_SIDE = 1.08
# The ear band spans from this far below to this far above the outer contour landmarks.
_EAR_BELOW, _EAR_ABOVE = 0.45, 0.40
# Behind this depth (relative to the outer contour landmarks) the head is scalp or neck.
_BACK_MARGIN = 0.05


def region_labels(template: FlameTemplate, embedding: LandmarkEmbedding) -> np.ndarray:
    """(5023,) int8 index into ``REGIONS`` for every template vertex."""
    v = template.vertices
    lmk = embedding.points(v, template.faces)
    brow_y = lmk[17:27, 1].mean()
    chin_y = lmk[8, 1]
    ear_x = np.abs(lmk[[0, 16], 0]).mean()
    ear_y = lmk[[0, 16], 1].mean()
    ear_z = lmk[[0, 16], 2].mean()

    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    labels = np.zeros(len(v), np.int8)  # face
    behind = z < ear_z + _BACK_MARGIN
    labels[behind & (y > ear_y - _EAR_BELOW)] = REGIONS.index("scalp")
    labels[y > brow_y + _FOREHEAD] = REGIONS.index("scalp")
    labels[(y < chin_y) | (behind & (y <= ear_y - _EAR_BELOW))] = REGIONS.index("neck")
    ears = (np.abs(x) > _EAR_SIDE * ear_x) & (y > ear_y - _EAR_BELOW) & (y < ear_y + _EAR_ABOVE)
    labels[ears] = REGIONS.index("ears")
    labels[LEFT_EYEBALL] = REGIONS.index("eyeballs")
    labels[RIGHT_EYEBALL] = REGIONS.index("eyeballs")
    return labels


def region_weights(labels: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """(V,) float32 per-vertex weights from per-region weights (missing regions weigh 1)."""
    table = np.array([float(weights.get(name, 1.0)) for name in REGIONS], np.float32)
    return table[labels]
