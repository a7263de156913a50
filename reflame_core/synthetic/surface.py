"""Closest points on a triangle mesh (exact per candidate triangle, candidates from a KD-tree)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def closest_on_triangles(
    p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of each triangle (a,b,c) to p, all (M,3): (points (M,3), bary (M,3))."""
    ab, ac, ap = b - a, c - a, p - a
    d00 = np.einsum("ij,ij->i", ab, ab)
    d01 = np.einsum("ij,ij->i", ab, ac)
    d11 = np.einsum("ij,ij->i", ac, ac)
    d20 = np.einsum("ij,ij->i", ap, ab)
    d21 = np.einsum("ij,ij->i", ap, ac)
    denom = d00 * d11 - d01 * d01
    ok = denom > 1e-30 * np.maximum(d00 * d11, 1e-300)
    safe = np.where(ok, denom, 1.0)
    v = (d11 * d20 - d01 * d21) / safe
    w = (d00 * d21 - d01 * d20) / safe
    bary = np.stack([1 - v - w, v, w], axis=1)
    inside = ok & (bary >= 0).all(axis=1)

    best = np.full(len(p), np.inf)
    best_bary = bary.copy()
    for i, j in ((0, 1), (1, 2), (2, 0)):
        x, y = (a, b, c)[i], (a, b, c)[j]
        e = y - x
        t = np.clip(np.einsum("ij,ij->i", p - x, e) / np.maximum(np.einsum("ij,ij->i", e, e),
                                                                  1e-300), 0.0, 1.0)
        q = x + t[:, None] * e
        d = np.einsum("ij,ij->i", p - q, p - q)
        better = ~inside & (d < best)
        best = np.where(better, d, best)
        eb = np.zeros_like(bary)
        eb[:, i], eb[:, j] = 1 - t, t
        best_bary = np.where(better[:, None], eb, best_bary)
    pts = np.einsum("mk,mkd->md", best_bary, np.stack([a, b, c], axis=1))
    return pts, best_bary


def closest_points(
    vertices: np.ndarray, faces: np.ndarray, queries: np.ndarray, candidates: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closest surface points of a mesh to ``queries`` (Q,3).

    Candidate triangles are the ``candidates`` nearest by centroid, which is exact for
    queries near a reasonably uniform surface (the use here: points on or next to a scan).

    Returns: points (Q,3), face ids (Q,), barycentric (Q,3), distances (Q,).
    """
    v = np.asarray(vertices, np.float64)
    q = np.asarray(queries, np.float64)
    tri = v[faces]
    k = min(candidates, len(faces))
    _, cand = cKDTree(tri.mean(1)).query(q, k=k)
    cand = cand.reshape(len(q), k)
    flat = cand.ravel()
    pts, bary = closest_on_triangles(
        np.repeat(q, k, axis=0), tri[flat, 0], tri[flat, 1], tri[flat, 2]
    )
    d = np.linalg.norm(pts - np.repeat(q, k, axis=0), axis=1).reshape(len(q), k)
    best = d.argmin(1)
    rows = np.arange(len(q)) * k + best
    return pts[rows], flat[rows], bary[rows], d[np.arange(len(q)), best]
