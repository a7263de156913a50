"""What a scan file carries besides the head, left out on loading: vertices no face uses, and
small pieces far from the rest (photogrammetry floaters, a stray point).

Both would otherwise set the scan's bounding box, which frames every render and sizes every
threshold: one unused vertex a metre away shrinks the head to a speck in the detection
renders, and the fit goes on without landmarks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from reflame_core.errors import ScanError
from reflame_core.geometry.orientation import face_parts
from reflame_core.io.mesh import Scan

# Pieces with at least this share of the scan's surface area are the body; the others are
# left out where no vertex of theirs lies within the body's bounding box grown by
# FAR_MARGIN of its largest side (an eyeball, a tooth row or a hair card lies inside).
BODY_AREA_SHARE = 0.02
FAR_MARGIN = 0.25


def used_vertices_only(scan: Scan, path: Path) -> Scan:
    """``scan`` without the vertices no face uses (said in its notes); a vertex a face uses
    that is NaN/inf is a ScanError naming it as the file counts (from 1). Faces whose indices
    are out of range are left for ``validate_scan`` to report."""
    v, f = scan.vertices, scan.faces
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= len(v):
        return scan
    used = np.zeros(len(v), bool)
    used[f.ravel()] = True
    bad = used & ~np.isfinite(v).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0]) + 1
        raise ScanError(path, f"{int(bad.sum())} vertices of its faces are NaN/inf (the first "
                        f"is vertex {first}, counting from 1 as the file does)")
    if used.all():
        return scan
    unused = int((~used).sum())
    kept = scan.with_faces(np.ones(len(f), bool))
    return replace(kept, notes=[*scan.notes, f"{unused} vertices that no face uses were left "
                                "out"])


def without_far_pieces(scan: Scan) -> Scan:
    """``scan`` without its small pieces far from the rest (said in its notes); unchanged
    where there are none. Vertices must be finite and every one used by a face."""
    parts = face_parts(scan.faces, len(scan.vertices))
    if parts.max() == 0:
        return scan
    tri = scan.vertices[scan.faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    part_area = np.bincount(parts, area)
    body = part_area >= BODY_AREA_SHARE * part_area.sum()
    if not body.any():  # dust everywhere: nothing stands out as the head
        return scan
    corners = tri[body[parts]].reshape(-1, 3)
    low, high = corners.min(0), corners.max(0)
    margin = FAR_MARGIN * float((high - low).max())
    inside = ((tri >= low - margin) & (tri <= high + margin)).all(axis=2).any(axis=1)  # (F,)
    near = np.bincount(parts, inside.astype(np.float64)) > 0
    far = ~near[parts]
    if not far.any():
        return scan
    pieces = int((~near).sum())
    kept = scan.with_faces(~far)
    return replace(kept, notes=[*scan.notes, f"{pieces} small pieces ({int(far.sum())} faces) "
                                "far from the rest of the scan were left out"])
