"""Where the head may be in a scan that shows much more than a head: a bust on a stand, a
head on a plinth, a body.

The face search renders the whole scan to fill its views; when the head is a fifth of the
scan, its face is a few dozen pixels there and no detector finds it. A head sits at an end
of such a scan, so the parts tried are balls at its ends: for each of the six axis
directions, the faces within a ball that touches the scan's farthest point along that
direction from inside, for two ball sizes (a head on a stand of its own size; one a fifth of
the whole). Turned and framed on their own, their face fills the views again.

Where the landmarks are known (a landmark file, a detection), they say where the head is:
``landmark_head`` places FLAME's head box by them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from reflame_core.geometry.frame import AXIS_NAMES, axis_vector
from reflame_core.io.mesh import Scan

# Ball radii as fractions of the scan's largest bounding-box side, larger first: a head on a
# stand about as tall as itself (ball 1.4 head heights across), then a head a fifth to a
# tenth of the whole (a tall plinth, a standing body).
RADII = (0.35, 0.18)
# A part nearly as large as the scan is the scan again (searched already): its largest
# bounding-box side at most this share of the scan's.
MAX_EXTENT = 0.9
# Nor is a part with a handful of faces a head (a stand's corner).
MIN_FACES = 200
# FLAME's head (eyeballs aside) next to the RMS radius of its 68 landmarks about their
# centroid: its bounding box's largest side, and the box's centre from that centroid along
# the canonical +x, +y (up), +z (front). Measured on the FLAME 2023 template: 5.19 and
# (-0.02, -0.17, -1.17).
HEAD_EXTENT_PER_FACE = 5.2
HEAD_CENTRE_PER_FACE = np.array([0.0, -0.17, -1.17])
# A scan this many head extents long or more is framed on the head its landmarks mark (a
# stand, a body; a bust with shoulders is 1.5-1.6).
LONG_SCAN = 2.0


def head_crops(scan: Scan) -> Iterator[tuple[str, Scan]]:
    """(where, the part of ``scan``) for each end ball that may hold the head, in the order
    to try them: larger balls first, the +y end (most scans' up) first at each size. ``where``
    reads e.g. "the +y end, 35% of the scan's size".

    Parts are ``Scan.with_faces`` copies in the scan's own frame (texture shared), of the
    faces wholly inside the ball."""
    vertices = np.asarray(scan.vertices, np.float64)
    size = float(scan.extent.max())
    order = ("+y", *[a for a in AXIS_NAMES if a != "+y"])
    for fraction in RADII:
        radius = fraction * size
        for name in order:
            d = axis_vector(name)
            centre = vertices[int(np.argmax(vertices @ d))]
            centre = centre - radius * d
            inside = (np.linalg.norm(vertices - centre, axis=1) <= radius)[scan.faces].all(1)
            if inside.sum() < MIN_FACES:
                continue
            part = scan.with_faces(inside)
            if part.extent.max() <= MAX_EXTENT * size:
                yield f"the {name} end, {fraction:.0%} of the scan's size", part


def landmark_head(scan: Scan, landmarks: np.ndarray, rotation: np.ndarray
                  ) -> tuple[str, np.ndarray, float] | None:
    """Where known landmarks put the head in a scan much longer than a head: (where, the
    centre (3,) of FLAME's head box placed by them, scan frame, and that box's largest side),
    or None for a scan less than ``LONG_SCAN`` head extents long.

    Args:
        scan: in its own frame.
        landmarks: (68,3) iBUG landmarks on it, scan frame (NaN rows: not placed).
        rotation: (3,3) rows the scan-frame directions that become canonical +x, +y (up)
            and +z (front), as the face gives them.
    """
    points = landmarks[np.isfinite(landmarks).all(1)]
    if len(points) < 3:
        return None
    centroid = points.mean(0)
    face = float(np.sqrt(((points - centroid) ** 2).sum(1).mean()))
    rotation = np.asarray(rotation, np.float64)
    turned = np.asarray(scan.vertices, np.float64) @ rotation.T
    head = HEAD_EXTENT_PER_FACE * face
    scan_size = float((turned.max(0) - turned.min(0)).max())
    if not head > 0 or scan_size < LONG_SCAN * head:
        return None
    centre = centroid + rotation.T @ (HEAD_CENTRE_PER_FACE * face)
    return f"the box its landmarks mark, {head / scan_size:.0%} of the scan's length", centre, head
