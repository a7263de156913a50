"""The head of a scan that shows more than a head: shoulders, a chest, a whole body.

FLAME ends at the base of the neck. Below that a bust's shoulders and chest have nothing in
FLAME to match them, yet the silhouette, depth and scan-to-fit terms would pull FLAME's neck
down and out onto them. Once landmarks say where the face is, FLAME's neck opening is placed
on the scan by a similarity (Umeyama on the landmarks), and the scan faces wholly past the
opening's plane are left out of the fit. A scan that ends near the opening (a head, a cut
neck, a neck a little longer than FLAME's) is left whole.
"""

from __future__ import annotations

import numpy as np

from reflame_core.fit.regions import LEFT_EYEBALL
from reflame_core.fit.stages.rigid import umeyama
from reflame_core.geometry.edges import boundary_loops

# A scan is a body (not a head with a long neck) when it reaches this far past FLAME's neck
# opening, as a fraction of FLAME's head height: a head-and-neck scan's neck ends within a
# few percent of the opening, even with its proportions 15% off FLAME's; a bust's chest and
# shoulders reach a third of a head height and more below it.
BODY_REACH = 0.15
# Faces past the opening by less than this (fraction of head height) are kept: where the
# landmarks put the opening is only as good as their similarity, and the fit's neck may end
# a little past it.
NECK_MARGIN = 0.03


def neck_opening(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plane past FLAME's neck opening: a point (3,) on it and its unit normal (3,),
    pointing away from the head (down the neck). The plane is fitted to the opening's rim,
    then moved down the neck to its lowest point, so the whole template lies on the head's
    side.

    ``vertices`` (V,3), ``faces`` (F,3) of the template; the eyeballs' faces are left out.
    The opening is the lowest (least +y) of the head's boundary loops (the other is the
    mouth's).
    """
    loops = boundary_loops(faces[(faces < LEFT_EYEBALL.start).all(1)])
    if not loops:
        raise ValueError("the template has no open neck (no boundary loop)")
    loop = min(loops, key=lambda idx: float(vertices[idx, 1].mean()))
    points = vertices[loop].astype(np.float64)
    centre = points.mean(0)
    normal = np.linalg.svd(points - centre)[2][-1]
    if normal @ (centre - vertices[: LEFT_EYEBALL.start].mean(0)) < 0:
        normal = -normal
    return centre + normal * float(((points - centre) @ normal).max()), normal


def head_faces(
    scan_vertices: np.ndarray,
    scan_faces: np.ndarray,
    template_vertices: np.ndarray,
    template_faces: np.ndarray,
    template_landmarks: np.ndarray,
    landmarks: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray | None:
    """Which scan faces belong to the head, where the scan also shows a body below it.

    Args:
        scan_vertices, scan_faces: the scan (V,3), (F,3), any frame and units.
        template_vertices, template_faces: FLAME's template.
        template_landmarks: (L,3) the template's points for the landmarks (the embedding).
        landmarks: (L,3) where they are on the scan, same frame as ``scan_vertices``.
        weights: (L,) how much each landmark counts (0: not placed).

    Returns:
        (F,) bool, True for faces kept: those with a corner less than ``NECK_MARGIN`` head
        heights past the neck opening. None when the scan does not reach ``BODY_REACH`` past
        the opening (nothing to leave out) or too few landmarks place the template.

    The shoulders' tops above the opening's plane stay: FLAME's neck widens at its base to
    lie on them (on the LeePerrySmith bust, leaving them out too left that rim standing off
    the scan).
    """
    use = np.asarray(weights) > 0
    if use.sum() < 4:
        return None
    to_scan = umeyama(np.asarray(template_landmarks, np.float64)[use],
                      np.asarray(landmarks, np.float64)[use], np.asarray(weights)[use])
    point, normal = neck_opening(template_vertices, template_faces)
    height = float(np.ptp(template_vertices[: LEFT_EYEBALL.start, 1])) * to_scan.scale
    point = to_scan.apply(point[None])[0]
    normal = to_scan.rotation @ normal
    past = (np.asarray(scan_vertices, np.float64) - point) @ normal / height
    if past.max() < BODY_REACH:
        return None
    return (past[scan_faces] <= NECK_MARGIN).any(1)
