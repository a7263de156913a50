"""Rasterize a mesh's UV layout: which face, and where on it, each texel of a texture map lies.

Texel ``(row, col)`` of an ``R x R`` map sits at ``u = (col + 0.5) / R``,
``v = 1 - (row + 0.5) / R`` (OBJ convention, row 0 = top = v 1), inside UV tile ``tile``
(``tile <= u < tile + 1``). FLAME keeps its eyeballs in tile 2 (u in [2,3]); the face/head
texture, and facescape_texmap.jpg, only cover tile 0, so bakes use ``tile=0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Candidate (texel, face) pairs processed at once; bounds peak memory (~60 bytes per pair).
_CHUNK_PAIRS = 4_000_000


@dataclass
class UVRaster:
    """The UV layout of a mesh rasterized at ``resolution``.

    Attributes:
        face_id: (R,R) int64 face covering each texel centre, -1 where none.
        bary: (R,R,3) float32 barycentric coordinates of the texel centre on that face
            (zeros where ``face_id`` is -1).
    """

    face_id: np.ndarray
    bary: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        """(R,R) bool: texels inside the UV charts."""
        return self.face_id >= 0

    def interpolate(self, values: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Per-vertex ``values`` (V,C) at the covered texels -> (N,C), N = ``covered.sum()``.

        ``faces`` (F,3) indexes ``values`` (mesh faces for positions/normals, uv faces for UVs).
        """
        fid = self.face_id[self.covered]
        b = self.bary[self.covered]
        corners = np.asarray(values)[np.asarray(faces)[fid]]  # (N,3,C)
        return np.einsum("nk,nkc->nc", b, corners.astype(np.float32))


def rasterize_uv(
    uv: np.ndarray, uv_faces: np.ndarray, resolution: int, *, tile: int = 0
) -> UVRaster:
    """Rasterize the UV triangles ``uv[uv_faces]`` lying in UV tile ``tile``.

    Args:
        uv: (T,2) UV coordinates, OBJ convention (v up).
        uv_faces: (F,3) indices into ``uv``; the face index reported is the row of ``uv_faces``.
        resolution: R, texels per side.
        tile: which unit square along u to rasterize (faces are assigned by their UV centroid).

    Returns:
        UVRaster; a texel centre exactly on a shared edge goes to one of its faces.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    res = int(resolution)
    tri_uv = np.asarray(uv, np.float64)[np.asarray(uv_faces)]  # (F,3,2)
    in_tile = np.floor(tri_uv[:, :, 0].mean(1)) == tile
    face_ids = np.nonzero(in_tile)[0]
    # Pixel space: x = u*R - 0.5 is the column whose centre is at u; y likewise for rows.
    px = np.empty((len(face_ids), 3, 2))
    px[:, :, 0] = (tri_uv[face_ids, :, 0] - tile) * res - 0.5
    px[:, :, 1] = (1.0 - tri_uv[face_ids, :, 1]) * res - 0.5

    x0 = np.clip(np.ceil(px[:, :, 0].min(1)), 0, res).astype(np.int64)
    x1 = np.clip(np.floor(px[:, :, 0].max(1)), -1, res - 1).astype(np.int64)
    y0 = np.clip(np.ceil(px[:, :, 1].min(1)), 0, res).astype(np.int64)
    y1 = np.clip(np.floor(px[:, :, 1].max(1)), -1, res - 1).astype(np.int64)
    w = np.maximum(x1 - x0 + 1, 0)
    h = np.maximum(y1 - y0 + 1, 0)
    counts = w * h

    face_id = np.full((res, res), -1, np.int64)
    bary = np.zeros((res, res, 3), np.float32)

    # Process faces in groups whose bounding boxes hold about _CHUNK_PAIRS texels together.
    ends = np.cumsum(counts)
    start = 0
    while start < len(face_ids):
        base = ends[start - 1] if start > 0 else 0
        stop = int(np.searchsorted(ends, base + _CHUNK_PAIRS, side="right"))
        stop = max(stop, start + 1)
        sl = slice(start, stop)
        _raster_chunk(px[sl], x0[sl], y0[sl], w[sl], counts[sl], face_ids[sl], face_id, bary)
        start = stop
    return UVRaster(face_id=face_id, bary=bary)


def _raster_chunk(
    px: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    w: np.ndarray,
    counts: np.ndarray,
    face_ids: np.ndarray,
    face_id_out: np.ndarray,
    bary_out: np.ndarray,
) -> None:
    """Test every texel in each face's bounding box; write the inside ones into the outputs."""
    total = int(counts.sum())
    if total == 0:
        return
    local = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    offset = np.arange(total, dtype=np.int32) - np.repeat(
        (np.cumsum(counts) - counts).astype(np.int32), counts
    )
    wl = w[local].astype(np.int32)
    row_in = offset // wl
    col = x0.astype(np.int32)[local] + (offset - row_in * wl)
    row = y0.astype(np.int32)[local] + row_in

    # Per-face affine map from pixel to barycentric (l1, l2): precomputed once per face.
    a = px[:, 0]
    e0 = px[:, 1] - a
    e1 = px[:, 2] - a
    det = e0[:, 0] * e1[:, 1] - e0[:, 1] * e1[:, 0]
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    # l1 = (dx*e1y - dy*e1x)/det, l2 = (e0x*dy - e0y*dx)/det, with dx = col - ax, dy = row - ay
    c1x, c1y = (e1[:, 1] * inv).astype(np.float32), (-e1[:, 0] * inv).astype(np.float32)
    c2x, c2y = (-e0[:, 1] * inv).astype(np.float32), (e0[:, 0] * inv).astype(np.float32)
    c1 = -(c1x * a[:, 0] + c1y * a[:, 1]).astype(np.float32)
    c2 = -(c2x * a[:, 0] + c2y * a[:, 1]).astype(np.float32)
    colf = col.astype(np.float32)
    rowf = row.astype(np.float32)
    l1 = c1x[local] * colf + c1y[local] * rowf + c1[local]
    l2 = c2x[local] * colf + c2y[local] * rowf + c2[local]
    l0 = 1.0 - l1 - l2
    eps = -1e-6
    inside = ok[local] & (l0 >= eps) & (l1 >= eps) & (l2 >= eps)

    r, cc = row[inside], col[inside]
    face_id_out[r, cc] = face_ids[local[inside]]
    bary_out[r, cc] = np.clip(np.stack([l0[inside], l1[inside], l2[inside]], 1), 0.0, 1.0)


def rasterize_uv_with(
    backend, uv: np.ndarray, uv_faces: np.ndarray, resolution: int, *, tile: int = 0
) -> UVRaster:
    """``rasterize_uv`` through a render backend (``reflame_core.render.backends``): on a GPU
    (nvdiffrast) a 1024² layout takes milliseconds instead of most of a second.

    Texel centres and faces are those of ``rasterize_uv``; a texel centre exactly on a shared
    edge may go to the other face (the backend's tie rule).
    """
    face_id, bary = rasterize_uv_tensors(backend, uv, uv_faces, resolution, tile=tile)
    return UVRaster(face_id=face_id.cpu().numpy(), bary=bary.float().cpu().numpy())


def rasterize_uv_tensors(backend, uv: np.ndarray, uv_faces: np.ndarray, resolution: int, *,
                         tile: int = 0):
    """``rasterize_uv_with`` left on the backend's device: face_id (R,R) int64 and bary
    (R,R,3) float32 tensors."""
    import torch

    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    res = int(resolution)
    uv = np.asarray(uv, np.float64)
    uv_faces = np.asarray(uv_faces, np.int64)
    in_tile = np.floor(uv[uv_faces][:, :, 0].mean(1)) == tile
    face_ids = np.nonzero(in_tile)[0]
    device = backend.device
    # Clip space: x = 2(u - tile) - 1; y = 2v - 1, so that rast row 0 (clip y -1) is v = 0
    # and the flipped image has row 0 = v 1 (texel centres fall on pixel centres).
    pos = np.zeros((len(uv), 4), np.float32)
    pos[:, 0] = 2.0 * (uv[:, 0] - tile) - 1.0
    pos[:, 1] = 2.0 * uv[:, 1] - 1.0
    pos[:, 3] = 1.0
    pos_t = torch.as_tensor(pos, device=device)[None]
    tri = torch.as_tensor(uv_faces[face_ids], dtype=torch.int32, device=device)
    with torch.no_grad():
        rast = backend.rasterize(pos_t, tri, (res, res))[0].flip(0)
    tri_id = rast[..., 3].round().long() - 1
    lookup = torch.as_tensor(face_ids, device=device)
    face_id = torch.where(tri_id >= 0, lookup[tri_id.clamp_min(0)], torch.full_like(tri_id, -1))
    b = rast[..., :2]
    bary = torch.cat([b, 1.0 - b.sum(-1, keepdim=True)], -1).clamp(0.0, 1.0)
    bary = torch.where((face_id >= 0)[..., None], bary, torch.zeros_like(bary))
    return face_id, bary.float()
