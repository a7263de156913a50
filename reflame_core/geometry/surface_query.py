"""Where query points land on a triangle mesh: closest point, or a ray cast along a direction.

Both are vectorised over points. Candidate triangles are the nearest triangle centroids plus
the faces around the nearest vertex, found by KD-trees on the CPU (``MeshQuery``) or by a
uniform grid in torch on any device (``TorchMeshQuery``, for GPUs); exact point-triangle or
ray-triangle tests then run on the candidates only, in torch on contiguous per-coordinate
tensors, one implementation for both, so there is no per-point Python loop and no BVH library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from reflame_core.geometry.grid_neighbors import GridNeighbors

# Points per batch: small enough for the per-coordinate temporaries to stay in cache.
_CHUNK = 16_384
# Points per batch on a torch device: the exact tests hold ~2 KB of temporaries per point;
# on a GPU 4x as many (fewer kernel launches; ~2 GB).
_DEVICE_CHUNK = 262_144


def _device_chunk(device: torch.device) -> int:
    return _DEVICE_CHUNK * (4 if device.type == "cuda" else 1)


def _map_chunks(fn: Callable[[slice], None], n: int) -> None:
    """Run ``fn(slice)`` over [0, n) in chunks, one chunk per worker thread at a time.

    Torch's own intra-op threading synchronises on every small elementwise op, which on a
    busy 2-core machine costs more than the work; independent chunks on single-threaded torch
    scale cleanly instead. The torch thread count is restored afterwards.
    """
    slices = [slice(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]
    workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1, len(slices)))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            if workers == 1:
                for sl in slices:
                    fn(sl)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(fn, slices))
    finally:
        torch.set_num_threads(previous)


@dataclass
class SurfaceHits:
    """Where each query point landed on the mesh (numpy arrays from ``MeshQuery``, tensors
    from ``TorchMeshQuery``).

    Attributes:
        face: (N,) int64 hit face, -1 where there is no hit.
        bary: (N,3) float32 barycentric coordinates of the hit on ``face``.
        points: (N,3) float32 hit positions (the query point where no hit).
        distance: (N,) float32 distance from query point to hit (inf where no hit).
    """

    face: np.ndarray
    bary: np.ndarray
    points: np.ndarray
    distance: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return self.face >= 0


class MeshQuery:
    """Spatial index over one mesh (vertices (V,3), faces (F,3)); build once, query many.

    Args:
        centroids: how many nearest triangle centroids are candidates.
        ring: how many faces around the nearest vertex are candidates. Together they find the
            exact closest triangle for all but ~1e-4 of points near a typical scan surface
            (measured against brute force); a miss still lands on an adjacent triangle.
    """

    def __init__(
        self, vertices: np.ndarray, faces: np.ndarray, *, centroids: int = 4, ring: int = 8
    ):
        self.vertices = np.asarray(vertices, np.float32)
        self.faces = np.asarray(faces, np.int64)
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or len(self.faces) == 0:
            raise ValueError(f"MeshQuery needs faces (F,3) with F>0, got {self.faces.shape}")
        tri = self.vertices[self.faces]  # (F,3,3)
        self._tri_soa = torch.from_numpy(np.ascontiguousarray(tri.transpose(1, 2, 0)))  # (3,3,F)
        self._k = min(int(centroids), len(self.faces))
        from scipy.spatial import cKDTree  # the CPU path's index; TorchMeshQuery needs none

        self._centroid_tree = cKDTree(tri.mean(1))
        self._vertex_tree = cKDTree(self.vertices)
        self._ring = _vertex_face_ring(
            torch.from_numpy(self.faces), len(self.vertices), width=ring).numpy()
        fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        self.face_normals = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-20)

    def candidates(self, points: np.ndarray) -> np.ndarray:
        """(N,C) int64 candidate faces per point (N,3)."""
        _, near = self._centroid_tree.query(points, k=self._k)
        _, nv = self._vertex_tree.query(points, k=1)
        return np.concatenate([near.reshape(len(points), -1), self._ring[nv]], axis=1)

    def closest(self, points: np.ndarray) -> SurfaceHits:
        """Closest surface point to each of ``points`` (N,3)."""
        pts = np.asarray(points, np.float32)
        out = _empty_hits(pts)

        def run(sl: slice) -> None:
            p = torch.from_numpy(np.ascontiguousarray(pts[sl].T))[:, :, None]  # (3,n,1)
            cand = torch.from_numpy(self.candidates(pts[sl]))
            face, bary, points, distance = _closest_among(p, self._tri_soa, cand)
            out.face[sl] = face.numpy()
            out.bary[sl] = bary.numpy()
            out.points[sl] = points.numpy()
            out.distance[sl] = distance.numpy()

        _map_chunks(run, len(pts))
        return out

    def raycast(
        self, origins: np.ndarray, directions: np.ndarray, max_distance: float
    ) -> SurfaceHits:
        """Hit of the line ``o + t d`` with ``|t| <= max_distance`` (both ways), least ``|t|``.

        The candidates are gathered around the point where the line meets the plane of the
        closest triangle (one Newton step from the closest point), which is next to the hit
        whenever the line meets the surface near its origin, the bake's case.

        Args:
            origins: (N,3) line origins.
            directions: (N,3) unit directions.
            max_distance: search range along the line, in mesh units.
        """
        org = np.asarray(origins, np.float32)
        dirs = np.asarray(directions, np.float32)
        seed = self.closest(org)
        nrm = self.face_normals[seed.face].astype(np.float32)
        along = (dirs * nrm).sum(1)
        t0 = ((seed.points - org) * nrm).sum(1) / np.where(np.abs(along) > 1e-3, along, 1e-3)
        t0 = np.clip(t0, -max_distance, max_distance)
        probe = org + t0[:, None] * dirs
        out = _empty_hits(org)

        def run(sl: slice) -> None:
            cand = np.concatenate([self.candidates(probe[sl]), seed.face[sl, None]], axis=1)
            o = torch.from_numpy(np.ascontiguousarray(org[sl].T))[:, :, None]
            d = torch.from_numpy(np.ascontiguousarray(dirs[sl].T))[:, :, None]
            face, bary, t = _ray_among(o, d, self._tri_soa, torch.from_numpy(cand), max_distance)
            tb = t.numpy()
            out.face[sl] = face.numpy()
            out.bary[sl] = bary.numpy()
            out.points[sl] = org[sl] + tb[:, None] * dirs[sl]
            out.distance[sl] = np.where(face.numpy() >= 0, np.abs(tb), np.inf)

        _map_chunks(run, len(org))
        return out


def _closest_among(p: Tensor, tri_soa: Tensor, cand: Tensor) -> tuple[Tensor, ...]:
    """The closest of each point's candidate triangles (one implementation for both indexes).

    Args:
        p: (3,n,1) points; tri_soa: (3,3,F) triangle corners; cand: (n,C) int64 faces.

    Returns:
        face (n,) int64, bary (n,3), points (n,3), distance (n,).
    """
    q, bary = _closest_on_triangles(p, tri_soa[:, :, cand])
    diff = q - p
    d2 = _dot(diff, diff)  # (n,C)
    best = d2.argmin(1)
    rows = torch.arange(len(best), device=best.device)
    return cand[rows, best], bary[:, rows, best].T, q[:, rows, best].T, d2[rows, best].sqrt()


def _ray_among(
    o: Tensor, d: Tensor, tri_soa: Tensor, cand: Tensor, max_distance: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The least-``|t|`` hit, ``|t| <= max_distance``, of each line among its candidates.

    Args:
        o, d: (3,n,1) origins and unit directions; tri_soa: (3,3,F); cand: (n,C) int64.

    Returns:
        face (n,) int64 (-1: no hit), bary (n,3) (zeros where none), t (n,) (0 where none).
    """
    t, bary, ok = _ray_triangles(o, d, tri_soa[:, :, cand])
    score = torch.where(ok & (t.abs() <= max_distance), t.abs(), float("inf"))
    best = score.argmin(1)
    rows = torch.arange(len(best), device=best.device)
    hit = torch.isfinite(score[rows, best])
    tb = torch.where(hit, t[rows, best], 0.0)
    face = torch.where(hit, cand[rows, best], -1)
    return face, torch.where(hit[:, None], bary[:, rows, best].T, 0.0), tb


class TorchMeshQuery:
    """``MeshQuery`` on a torch device: the same candidates (the ``centroids`` nearest triangle
    centroids plus the ``ring`` faces around the nearest vertex) from ``GridNeighbors`` instead of
    KD-trees, and the same exact tests, so nothing leaves the device. Takes and returns tensors
    (``SurfaceHits`` of tensors). On a GPU it is the fast one; on a CPU the KD-trees are faster,
    and this one runs there only so that its logic is tested.

    Args:
        vertices: (V,3), faces: (F,3) (arrays or tensors); device: where everything lives.
        centroids, ring: as in ``MeshQuery``.
        timer: optional ``timer(part)`` context manager factory that is entered around each
            "candidates" and "tests" part (benchmarks pass one that synchronises the device).
    """

    def __init__(
        self, vertices, faces, *, device: str | torch.device = "cpu", centroids: int = 4,
        ring: int = 8, timer: Callable[[str], AbstractContextManager] | None = None,
    ):
        self.device = torch.device(device)
        verts = torch.as_tensor(np.asarray(vertices, np.float32), device=self.device)
        faces_np = np.asarray(faces, np.int64)
        if faces_np.ndim != 2 or faces_np.shape[1] != 3 or len(faces_np) == 0:
            raise ValueError(f"TorchMeshQuery needs faces (F,3) with F>0, got {faces_np.shape}")
        self.faces = torch.as_tensor(faces_np, device=self.device)
        tri = verts[self.faces]  # (F,3,3)
        self._tri_soa = tri.permute(1, 2, 0).contiguous()  # (3,3,F)
        self._centroid_grid = GridNeighbors(tri.mean(1), min(int(centroids), len(faces_np)))
        self._vertex_grid = GridNeighbors(verts, 1)
        self._ring = _vertex_face_ring(self.faces, len(verts), width=ring)
        fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
        self.face_normals = fn / fn.norm(dim=1, keepdim=True).clamp_min(1e-20)
        # Every point of a triangle is within this of its centroid and of its corners.
        self.max_edge = float((tri - tri.roll(1, dims=1)).norm(dim=2).max())
        self._timer = timer if timer is not None else (lambda part: nullcontext())
        # Resolved-by-grid counts of the last queries, for diagnostics: [grid, all].
        self.grid_resolved = [0, 0]

    def candidates(self, points: Tensor, reach: float | None = None) -> Tensor:
        """(N,C) int64 candidate faces per point (N,3); with ``reach``, ``MeshQuery``'s
        candidates for every face that has a point within ``reach - max_edge`` of the query
        (see ``GridNeighbors.query``), which bounds the work for queries far from the mesh."""
        near, ok_c = self._centroid_grid.query(points, reach)
        nv, ok_v = self._vertex_grid.query(points, reach)
        self.grid_resolved[0] += int((ok_c & ok_v).sum())
        self.grid_resolved[1] += len(points)
        return torch.cat([near, self._ring[nv[:, 0]]], 1)

    def closest(self, points: Tensor, within: float | None = None) -> SurfaceHits:
        """Closest surface point to each of ``points`` (N,3) tensor.

        Args:
            within: when given, the answer is ``MeshQuery``'s only where the closest point
                is within this distance; farther points get some farther surface point (a
                distance above ``within``), found with bounded work.
        """
        pts = points.to(self.device, torch.float32)
        reach = None if within is None else within + self.max_edge
        parts = []
        chunk = _device_chunk(self.device)
        for s in range(0, len(pts), chunk):
            sl = pts[s:s + chunk]
            with self._timer("candidates"):
                cand = self.candidates(sl, reach)
            with self._timer("tests"):
                parts.append(_closest_among(sl.T[:, :, None], self._tri_soa, cand))
        face, bary, hit_points, distance = (torch.cat(x) for x in zip(*parts, strict=True))
        return SurfaceHits(face=face, bary=bary, points=hit_points, distance=distance)

    def raycast(
        self, origins: Tensor, directions: Tensor, max_distance: float,
        seed: SurfaceHits | None = None,
    ) -> SurfaceHits:
        """``MeshQuery.raycast`` on tensors; ``seed``, when given, is
        ``closest(origins, within=max_distance)`` (the bake reuses it for the lines that
        miss). Candidate searches are bounded by ``max_distance``: a hit within it lies
        within ``max_distance`` of the origin and ``2 max_distance`` of the probe."""
        org = origins.to(self.device, torch.float32)
        dirs = directions.to(self.device, torch.float32)
        seed = seed if seed is not None else self.closest(org, within=max_distance)
        reach = 2.0 * max_distance + self.max_edge
        with self._timer("tests"):
            nrm = self.face_normals[seed.face]
            along = (dirs * nrm).sum(1)
            t0 = ((seed.points - org) * nrm).sum(1) / torch.where(along.abs() > 1e-3, along, 1e-3)
            probe = org + t0.clamp(-max_distance, max_distance)[:, None] * dirs
        parts = []
        chunk = _device_chunk(self.device)
        for s in range(0, len(org), chunk):
            sl = slice(s, s + chunk)
            with self._timer("candidates"):
                cand = torch.cat([self.candidates(probe[sl], reach), seed.face[sl, None]], 1)
            with self._timer("tests"):
                parts.append(_ray_among(org[sl].T[:, :, None], dirs[sl].T[:, :, None],
                                        self._tri_soa, cand, max_distance))
        face, bary, t = (torch.cat(x) for x in zip(*parts, strict=True))
        hit = face >= 0
        return SurfaceHits(face=face, bary=bary, points=org + t[:, None] * dirs,
                           distance=torch.where(hit, t.abs(), float("inf")))


def ray_triangle_distances(origins: np.ndarray, directions: np.ndarray,
                           triangles: np.ndarray) -> np.ndarray:
    """(N,T) how far along each ray (N,3 origins, N,3 unit directions) it meets each triangle
    (T,3,3) ahead of its origin; inf where it does not. Every pair is tested: for a few
    hundred rays against a few thousand triangles (no index)."""
    o = torch.from_numpy(np.ascontiguousarray(np.asarray(origins).T))[:, :, None]
    d = torch.from_numpy(np.ascontiguousarray(np.asarray(directions).T))[:, :, None]
    tri = torch.from_numpy(np.ascontiguousarray(np.asarray(triangles).transpose(1, 2, 0)))
    t, _, ok = _ray_triangles(o, d, tri[:, :, None, :])
    return torch.where(ok & (t > 1e-9), t, float("inf")).numpy()


def _empty_hits(points: np.ndarray) -> SurfaceHits:
    n = len(points)
    return SurfaceHits(
        face=np.full(n, -1, np.int64),
        bary=np.zeros((n, 3), np.float32),
        points=points.copy(),
        distance=np.full(n, np.inf, np.float32),
    )


def _vertex_face_ring(faces: Tensor, num_vertices: int, width: int) -> Tensor:
    """(V,width) faces around each vertex (first ``width``; padded by repeating the first),
    from ``faces`` (F,3) int64, on its device."""
    vid = faces.reshape(-1)
    fid = torch.arange(len(faces), device=faces.device).repeat_interleave(3)
    vid, order = torch.sort(vid, stable=True)
    fid = fid[order]
    start = torch.searchsorted(vid, torch.arange(num_vertices, device=faces.device))
    count = torch.bincount(vid, minlength=num_vertices)
    lane = torch.arange(width, device=faces.device)[None, :]
    slot = torch.minimum(lane, (count[:, None] - 1).clamp_min(0))
    ring = fid[(start[:, None] + slot).clamp_max(len(fid) - 1)]
    ring[count == 0] = 0  # unreferenced vertex: any face is a valid (if poor) candidate
    return ring


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _sub(a: Sequence[Tensor], b: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _cross(a: Sequence[Tensor], b: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return (
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    )


def _closest_on_triangles(p: Tensor, tri: Tensor) -> tuple[Tensor, Tensor]:
    """Closest points on triangles, in structure-of-arrays layout.

    Every quantity is a contiguous tensor per coordinate (reductions over a length-3 axis and
    strided slices are slow on CPU).

    Args:
        p: (3,...) point coordinates, broadcastable against ``tri[k, i]``.
        tri: (3 corners, 3 coordinates, ...) triangle corners.

    Returns:
        points (3,...) and barycentric coordinates (3,...).
    """
    pc = tuple(p[i] for i in range(3))
    corner = [tuple(tri[k, i] for i in range(3)) for k in range(3)]
    a = corner[0]
    ab, ac, ap = _sub(corner[1], a), _sub(corner[2], a), _sub(pc, a)
    d00, d01, d11 = _dot(ab, ab), _dot(ab, ac), _dot(ac, ac)
    d20, d21 = _dot(ap, ab), _dot(ap, ac)
    den = d00 * d11 - d01 * d01
    den = torch.where(den.abs() > 1e-30, den, torch.full_like(den, 1e-30))
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    u = 1.0 - v - w
    inside = (u >= 0) & (v >= 0) & (w >= 0)

    # Otherwise the closest point is on one of the three edges.
    best_d2 = torch.full_like(u, float("inf"))
    best = [torch.zeros_like(u) for _ in range(3)]
    zero = torch.zeros_like(u)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        e = _sub(corner[j], corner[i])
        t = (_dot(_sub(pc, corner[i]), e) / _dot(e, e).clamp_min(1e-30)).clamp(0.0, 1.0)
        diff = tuple(pc[k] - corner[i][k] - t * e[k] for k in range(3))
        d2 = _dot(diff, diff)
        better = d2 < best_d2
        best_d2 = torch.where(better, d2, best_d2)
        edge_bary = [zero, zero, zero]
        edge_bary[i], edge_bary[j] = 1.0 - t, t
        best = [torch.where(better, eb, bb) for eb, bb in zip(edge_bary, best, strict=True)]
    bary = torch.stack([torch.where(inside, b, bb) for b, bb in zip((u, v, w), best, strict=True)])
    points = torch.stack([sum(bary[k] * corner[k][i] for k in range(3)) for i in range(3)])
    return points, bary


def _ray_triangles(o: Tensor, d: Tensor, tri: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Moeller-Trumbore line/triangle intersection, two-sided, any sign of t, SoA layout.

    Args:
        o, d: (3,...) origins and directions, broadcastable against ``tri[k, i]``.
        tri: (3 corners, 3 coordinates, ...).

    Returns:
        t (...), barycentric coordinates (3,...), ok (...) bool (the line crosses the triangle).
    """
    oc = tuple(o[i] for i in range(3))
    dc = tuple(d[i] for i in range(3))
    corner = [tuple(tri[k, i] for i in range(3)) for k in range(3)]
    e1 = _sub(corner[1], corner[0])
    e2 = _sub(corner[2], corner[0])
    pvec = _cross(dc, e2)
    det = _dot(e1, pvec)
    ok = det.abs() > 1e-20
    inv = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
    tvec = _sub(oc, corner[0])
    v = _dot(tvec, pvec) * inv
    qvec = _cross(tvec, e1)
    w = _dot(dc, qvec) * inv
    t = _dot(e2, qvec) * inv
    u = 1.0 - v - w
    eps = -1e-6
    ok = ok & (u >= eps) & (v >= eps) & (w >= eps)
    bary = torch.stack((u, v, w)).clamp(0.0, 1.0)
    return t, bary, ok
