"""Nearest hit of one ray with a triangle mesh: the studio's own pick on the scan.

Polyscope picks whatever is drawn in front (the FLAME overlay, landmark spheres, camera
frusta), so the studio casts the mouse ray against the scan itself. One ray against every
triangle is a few milliseconds for a 20k-face scan, so no acceleration structure is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RayHit:
    """face: hit triangle; bary: (3,) barycentric coordinates on it (sum 1); t: distance along
    the unit ray; point: (3,) hit position."""

    face: int
    bary: np.ndarray
    t: float
    point: np.ndarray


def ray_mesh_hit(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray,
                 direction: np.ndarray) -> RayHit | None:
    """First hit (smallest t > 0) of the ray ``origin + t * direction`` with the mesh
    (vertices (V,3), faces (F,3)), both triangle sides; None when it misses."""
    o = np.asarray(origin, np.float64).reshape(3)
    d = np.asarray(direction, np.float64).reshape(3)
    norm = np.linalg.norm(d)
    if not np.isfinite(norm) or norm == 0:
        return None
    d = d / norm
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]  # (F,3,3)
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    p = np.cross(d, e2)
    det = (e1 * p).sum(1)
    ok = np.abs(det) > 1e-12 * np.maximum((e1 * e1).sum(1) * (e2 * e2).sum(1), 1e-30) ** 0.5
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = o - tri[:, 0]
    u = (s * p).sum(1) * inv
    q = np.cross(s, e1)
    v = (q @ d) * inv
    t = (q * e2).sum(1) * inv
    eps = 1e-9
    hit = ok & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (t > 0)
    if not hit.any():
        return None
    f = int(np.flatnonzero(hit)[np.argmin(t[hit])])
    bary = np.clip(np.array([1.0 - u[f] - v[f], u[f], v[f]]), 0.0, None)
    bary /= bary.sum()
    return RayHit(f, bary, float(t[f]), o + t[f] * d)
