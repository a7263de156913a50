"""Lift per-view 2D landmarks onto the scan surface and fuse the views robustly.

Per view: the triangle under a landmark pixel comes from the renderer's triangle buffer
(``RenderOutput.tri_id``); the exact surface point is the perspective-correct barycentric
position of the landmark's sub-pixel location inside that triangle (its corners projected with
the same cameras). Across views: each landmark only uses views within ``max_angle`` of frontal
(ears: any view); a view counts by how squarely it sees the surface there (a contour point seen
at a grazing angle lands on the wrong side of the silhouette), views far from the robust centre
are rejected, the rest averaged and snapped back onto the surface. Confidence = share of
agreeing views x how tightly they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.landmarks.detector import Detection2D

INLIER_RADIUS = 0.03  # views farther than this (x head size) from the robust centre are outliers
AGREEMENT_SCALE = 0.01  # inlier spread (x head size) at which confidence falls to exp(-1/2)
MIN_FACING = 0.25  # cos(angle) between surface normal and view ray below this: view ignored
# A point this far (x head size) off the mid-plane x=0 is only trusted from cameras on its own
# side or within SIDE_TOLERANCE_DEG of it: from the other side the detector still reports the
# (hidden) point, on the visible surface in front of it.
SIDE_MARGIN = 0.03
SIDE_TOLERANCE_DEG = 12.0


@dataclass
class ViewHits:
    """Landmarks of all views lifted onto the surface.

    Attributes:
        points: (B,K,3) float64 surface points (mesh frame), NaN where no hit.
        face: (B,K) int64 face under the landmark, -1 where no hit.
        facing: (B,K) cos of the angle between the face normal and the direction to the
            camera (1 = seen head-on).
        confidence: (B,K) detector confidence, 0 where not detected.
        cam_positions: (B,3) camera centres.
    """

    points: np.ndarray
    face: np.ndarray
    facing: np.ndarray
    confidence: np.ndarray
    cam_positions: np.ndarray


def same_side(points: np.ndarray, cam_positions: np.ndarray, head_size: float) -> np.ndarray:
    """(B,K) bool: the camera of view b is not on the far side (in x) of point (b,k).

    points (B,K,3) in a frame with the face's mid-plane at x = 0 (the canonical frame);
    cam_positions (B,3). NaN points count as not on the same side.
    """
    x = points[..., 0]
    cam = cam_positions / np.linalg.norm(cam_positions, axis=1, keepdims=True)
    lateral = np.sign(x) * cam[:, None, 0]  # sin(azimuth) towards the point's side
    off_plane = np.abs(x) > SIDE_MARGIN * head_size
    with np.errstate(invalid="ignore"):
        ok = ~off_plane | (lateral >= -np.sin(np.radians(SIDE_TOLERANCE_DEG)))
    return ok & np.isfinite(x)


def facing_cosine(corners: np.ndarray, points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(K,) cos of the angle between each triangle's normal (``corners`` (K,3,3), wound
    outward) and the direction from ``points`` (K,3) on it to ``camera`` (3,): 1 seen head-on,
    below 0 seen from behind (its inside, through a hole or past a cut)."""
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    ray = np.asarray(camera, np.float64) - points
    return np.einsum("kd,kd->k", normal, ray) / np.maximum(
        np.linalg.norm(normal, axis=1) * np.linalg.norm(ray, axis=1), 1e-30)


def _screen_bary(p: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Barycentrics (N,C,3) of pixels p (N,2) in 2D triangles corners (N,C,3,2).

    NaN for degenerate triangles.
    """
    a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
    v0, v1, v2 = b - a, c - a, p[:, None] - a
    den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = (v2[..., 0] * v1[..., 1] - v1[..., 0] * v2[..., 1]) / den
        l2 = (v0[..., 0] * v2[..., 1] - v2[..., 0] * v0[..., 1]) / den
    return np.stack([1 - l1 - l2, l1, l2], -1)


def lift_points(points: np.ndarray, tri_id: np.ndarray, pix: np.ndarray, depth: np.ndarray,
                faces: np.ndarray, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """2D landmarks of one view -> (face, barycentric) on the visible surface.

    Args:
        points: (K,2) pixel positions (x right, y down, pixel centres at +0.5); NaN = absent.
        tri_id: (H,W) int64 triangle buffer, -1 empty.
        pix: (V,2) all mesh vertices projected into this view (pixels).
        depth: (V,) their camera-space depths.
        faces: (F,3) mesh faces.
        window: search the triangles of this many pixels around each landmark pixel.
    Returns:
        face (K,) int64, -1 where the point is absent or nowhere near a visible triangle;
        bary (K,3) float64 surface barycentrics (rows of unplaced points are NaN).
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    k = len(pts)
    h, w = tri_id.shape
    face = np.full(k, -1, np.int64)
    bary = np.full((k, 3), np.nan)
    ok = np.isfinite(pts).all(1)
    if not ok.any():
        return face, bary
    idx = np.flatnonzero(ok)
    col = np.floor(pts[idx, 0]).astype(np.int64)
    row = np.floor(pts[idx, 1]).astype(np.int64)
    off = np.arange(-window, window + 1)
    rr = row[:, None, None] + off[None, :, None]
    cc = col[:, None, None] + off[None, None, :]
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    cand = np.where(inside, tri_id[rr.clip(0, h - 1), cc.clip(0, w - 1)], -1).reshape(len(idx), -1)
    tri = pix[faces[cand.clip(0)]]  # (n,C,3,2) candidate triangles on screen
    sb = _screen_bary(pts[idx], tri)
    # How far (pixels) each candidate triangle lies from the point: 0 inside it. A triangle
    # smaller than a pixel (a scan of a million faces) seldom holds the point itself, so
    # the nearest one is taken, up to the search window's reach.
    clamped = np.clip(np.nan_to_num(sb, nan=-1.0), 0.0, None)
    clamped /= np.maximum(clamped.sum(-1, keepdims=True), 1e-12)
    nearest = np.einsum("nck,nckd->ncd", clamped, tri)
    dist = np.where(cand >= 0, np.linalg.norm(nearest - pts[idx][:, None], axis=-1), np.inf)
    dist = np.where(np.isnan(sb).any(-1), np.inf, dist)
    # Among the triangles that hold the point, the one it lies deepest in (as drawn).
    depth_in = np.nan_to_num(sb.min(-1), nan=-1.0)
    holds = (depth_in >= 0) & (cand >= 0)
    dist = np.where(holds, 0.0, dist)
    best = np.argmin(np.where(holds, -depth_in, dist), axis=1)
    take = np.arange(len(idx))
    good = dist[take, best] <= window + 0.5  # else nowhere near a visible triangle
    f = cand[take, best][good]
    b = clamped[take, best][good]
    # Screen-space barycentrics -> surface barycentrics: perspective divides by depth.
    b /= depth[faces[f]]
    face[idx[good]] = f
    bary[idx[good]] = b / b.sum(1, keepdims=True)
    return face, bary


def lift_views(detections: list[Detection2D | None], tri_ids: np.ndarray, pixels: np.ndarray,
               depths: np.ndarray, cam_positions: np.ndarray, vertices: np.ndarray,
               faces: np.ndarray, names: tuple[str, ...]) -> ViewHits:
    """Lift every view's detected points.

    Args:
        detections: B per-view detections (None = no face found).
        tri_ids: (B,H,W) triangle buffers of those views.
        pixels: (B,V,2), depths (B,V): mesh vertices projected into each view.
        cam_positions: (B,3) camera centres (mesh frame).
        vertices (V,3), faces (F,3): the mesh the views were rendered from.
        names: (K,) point names to fill, in output order (the detector's own points).
    """
    nb, k = len(detections), len(names)
    pts = np.full((nb, k, 3), np.nan)
    face = np.full((nb, k), -1, np.int64)
    facing = np.zeros((nb, k))
    conf = np.zeros((nb, k))
    v = np.asarray(vertices, np.float64)
    order = {n: j for j, n in enumerate(names)}
    for b, det in enumerate(detections):
        if det is None:
            continue
        src = np.array([i for i, n in enumerate(det.names) if n in order], np.int64)
        dst = np.array([order[det.names[i]] for i in src], np.int64)
        p2 = det.points[src].astype(np.float64)
        p2[~(det.confidence[src] > 0)] = np.nan
        f, bary = lift_points(p2, tri_ids[b], pixels[b], depths[b], faces)
        hit = f >= 0
        f, bary, dst = f[hit], bary[hit], dst[hit]
        corners = v[faces[f]]
        p = np.einsum("kc,kcd->kd", bary, corners)
        face[b, dst], pts[b, dst] = f, p
        facing[b, dst] = facing_cosine(corners, p, cam_positions[b])
        conf[b, dst] = det.confidence[src[hit]]
    return ViewHits(pts, face, facing, conf, np.asarray(cam_positions, np.float64))


@dataclass
class FusedLandmarks:
    """Per landmark: the fused surface point and how much the views agree.

    Attributes:
        face: (K,) int64, -1 where no view saw the landmark.
        bary: (K,3) float64.
        points: (K,3) float64 (NaN where not placed).
        confidence: (K,) in [0,1].
        num_views: (K,) views that agreed (inliers).
    """

    face: np.ndarray
    bary: np.ndarray
    points: np.ndarray
    confidence: np.ndarray
    num_views: np.ndarray


def fuse_views(hits: ViewHits, usable: np.ndarray, query: MeshQuery,
               head_size: float) -> FusedLandmarks:
    """Robustly combine the views' surface points per landmark.

    Args:
        hits: from ``lift_views`` (B views, K landmarks).
        usable: (B,K) bool, the views allowed for each landmark (front-ish ones; any for ears).
        query: spatial index of the mesh, to snap the fused point back onto the surface.
        head_size: length that the thresholds are fractions of (mesh units).
    """
    nb, k = hits.face.shape
    ok = usable & (hits.face >= 0) & (hits.facing > MIN_FACING) & (hits.confidence > 0)
    ok &= same_side(hits.points, hits.cam_positions, head_size)
    fused = np.full((k, 3), np.nan)
    conf = np.zeros(k)
    count = np.zeros(k, np.int64)
    for j in range(k):
        sel = np.flatnonzero(ok[:, j])
        if sel.size == 0:
            continue
        p = hits.points[sel, j]
        w = hits.confidence[sel, j] * hits.facing[sel, j] ** 2
        # Centre = the most frontal views' weighted median-like estimate, robust to a few bad
        # views: start at the per-axis median, keep views near it, average them.
        centre = np.median(p, axis=0)
        for _ in range(2):
            d = np.linalg.norm(p - centre, axis=1)
            inl = d <= INLIER_RADIUS * head_size
            if not inl.any():
                inl = d <= d.min()
            centre = (w[inl, None] * p[inl]).sum(0) / w[inl].sum()
        spread = np.sqrt((w[inl] * np.sum((p[inl] - centre) ** 2, 1)).sum() / w[inl].sum())
        fused[j] = centre
        count[j] = int(inl.sum())
        conf[j] = (inl.sum() / sel.size) * np.exp(-0.5 * (spread / (AGREEMENT_SCALE * head_size))
                                                  ** 2)
    face = np.full(k, -1, np.int64)
    bary = np.tile(np.array([1.0, 0.0, 0.0]), (k, 1))
    placed = np.isfinite(fused[:, 0])
    if placed.any():
        snap = query.closest(fused[placed])
        face[placed] = snap.face
        bary[placed] = snap.bary
        fused[placed] = snap.points
    return FusedLandmarks(face, bary, fused, conf, count)
