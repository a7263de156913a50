"""The canonical fitting frame: head centred, +y up, +z towards the face, template-sized."""

from __future__ import annotations

import numpy as np

from reflame_core.geometry.similarity import Similarity

# Largest bounding-box extent of a scan after ``canonical_frame``. It matches the FLAME2023
# template in its normalized frame (flame_template.npz from jseobyun/WarpHE4D_ReFLAME,
# templates/FLAME2023): bounding box y-extent 3.194 (y from -1.872 to 1.321), its largest
# extent (x 2.18, z 2.28), so a head-only scan lands at template size.
CANONICAL_EXTENT = 3.19

def in_head_box(canonical_vertices: np.ndarray) -> np.ndarray:
    """(V,) bool: the vertices (V,3) of a scan in the canonical frame that lie in the box a
    head-only scan fills there (``CANONICAL_EXTENT`` wide, centred; 5% spare): all of them
    where the frame was set on the whole scan, the head where it was set on the head at one
    end of a larger scan (a stand, a body; ``landmarks/head_crops.py``). All of them where
    none lies in it."""
    inside = np.abs(np.asarray(canonical_vertices, np.float64)).max(1) <= 0.525 * CANONICAL_EXTENT
    return inside if inside.any() else np.ones(len(inside), bool)


_AXES = {
    "+x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0),
    "+y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
    "+z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0),
}
AXIS_NAMES = tuple(_AXES)


def axis_vector(name: str) -> np.ndarray:
    """Unit vector (3,) for one of "+x", "-x", "+y", "-y", "+z", "-z" ("x" means "+x")."""
    key = name.strip().lower()
    if len(key) == 1:
        key = "+" + key
    if key not in _AXES:
        raise ValueError(f"axis must be one of {', '.join(_AXES)}; got {name!r}")
    return np.array(_AXES[key])


def axes_rotation(up: str = "+y", front: str = "+z") -> np.ndarray:
    """(3,3) rotation taking the scan's ``up`` axis to +y and its ``front`` axis to +z."""
    u, f = axis_vector(up), axis_vector(front)
    if abs(float(u @ f)) > 0.5:
        raise ValueError(f"up ({up}) and front ({front}) must be different, perpendicular axes")
    # Rows are the scan-frame directions that become +x, +y, +z.
    return np.stack([np.cross(u, f), u, f])


def canonical_frame(scan_vertices: np.ndarray, up: str = "+y", front: str = "+z") -> Similarity:
    """Similarity from a scan's frame to the canonical frame.

    Args:
        scan_vertices: (V,3) in the scan's own frame and units.
        up, front: which scan axis points up / towards the face.

    Returns: ``x' = s R x + t`` with R the axis rotation, the bounding box centred at the
    origin and its largest extent scaled to ``CANONICAL_EXTENT``.
    """
    return rotated_frame(scan_vertices, axes_rotation(up, front))


def rotated_frame(scan_vertices: np.ndarray, rotation: np.ndarray) -> Similarity:
    """Similarity ``x' = s R x + t`` with the given rotation R (3,3) (rows: the scan-frame
    directions that become +x, +y, +z), the rotated bounding box centred at the origin and its
    largest extent scaled to ``CANONICAL_EXTENT``. ``canonical_frame`` for any rotation (the
    one ``landmarks.orient.find_frame`` finds)."""
    v = np.asarray(scan_vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"canonical_frame needs vertices (V,3), got {v.shape}")
    rot = np.asarray(rotation, np.float64)
    r = v @ rot.T
    lo, hi = r.min(0), r.max(0)
    extent = float((hi - lo).max())
    if not np.isfinite(extent) or extent <= 0:
        raise ValueError("canonical_frame needs finite vertices with a non-zero extent")
    s = CANONICAL_EXTENT / extent
    return Similarity(s, rot, -s * (lo + hi) / 2.0)
