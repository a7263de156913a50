"""The projection bake (``bake.bake_texture``) in torch on one device, for GPUs.

Same steps and conventions as the numpy bake: the FLAME UV raster's texel points and normals,
the surface queries (``TorchMeshQuery``: grid candidates, the shared exact tests), the scan's
colours (bilinear, ``sample_bilinear``'s convention), push-pull fill. Only the finished
texture, valid mask and distances are copied back to the host. On a CPU it computes the same
thing more slowly than the numpy bake; tests run it there to check its logic.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from torch import Tensor

from reflame_core.assets.flame import FlameTemplate
from reflame_core.geometry.surface_query import SurfaceHits, TorchMeshQuery
from reflame_core.io.mesh import Scan, vertex_normals
from reflame_core.texture.inpaint import push_pull_fill_tensor
from reflame_core.texture.uv_raster import rasterize_uv_tensors

Timer = Callable[[str], AbstractContextManager]


def bake_on_device(
    verts: np.ndarray,
    template: FlameTemplate,
    scan: Scan,
    *,
    resolution: int,
    method: str,
    max_distance: float,
    min_cos: float,
    device: torch.device,
    backend=None,
    query: TorchMeshQuery | None = None,
    timer: Timer | None = None,
):
    """``bake_texture``'s work on ``device``; arguments checked and defaulted by it.

    Args:
        verts: (5023,3) float32 fitted FLAME vertices.
        backend: rasterizes the UV layout when it lives on ``device`` (else the cached CPU
            raster is uploaded).
        query: a prebuilt ``TorchMeshQuery`` over ``scan`` on ``device``.
        timer: ``timer(part)`` context manager factory entered around the parts "raster",
            "candidates", "tests", "colours" and "fill" (benchmarks).

    Returns:
        BakeResult (numpy arrays).
    """
    from reflame_core.texture.bake import BakeResult

    part = timer if timer is not None else (lambda name: nullcontext())
    with torch.inference_mode():
        with part("raster"):
            covered, fid, bary = flame_uv_texels(template, resolution, device, backend)
            faces = torch.as_tensor(np.asarray(template.faces, np.int64), device=device)
            corner = faces[fid]  # (N,3)
            vt = torch.as_tensor(verts, device=device)
            nt = torch.as_tensor(vertex_normals(verts, template.faces), device=device)
            points = _blend(bary, vt[corner])
            normals = _blend(bary, nt[corner])
            normals = normals / normals.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if query is None:
            with part("candidates"):
                query = TorchMeshQuery(scan.vertices, scan.faces, device=device, timer=timer)
        # Texels whose closest scan point is beyond max_distance are invalid whatever it
        # is: their queries need not be exact (their distance is then an upper bound).
        hits = query.closest(points, within=max_distance)
        if method == "normal_ray":
            seed = hits
            hits = query.raycast(points, normals, max_distance, seed=seed)
            # Lines that miss take the closest point, as in the numpy bake.
            miss = hits.face < 0
            hits = SurfaceHits(*(torch.where(miss if a.ndim == 1 else miss[:, None], b, a)
                                 for a, b in ((hits.face, seed.face), (hits.bary, seed.bary),
                                              (hits.points, seed.points),
                                              (hits.distance, seed.distance))))
        with part("colours"):
            colors = scan_colors_tensor(scan, hits, device)
            facing = (query.face_normals[hits.face.clamp_min(0)] * normals).sum(1) >= min_cos
            ok = (hits.face >= 0) & (hits.distance <= max_distance) & facing
        with part("fill"):
            res = covered.shape[0]
            valid = torch.zeros((res, res), dtype=torch.bool, device=device)
            valid[covered] = ok
            distance = torch.full((res, res), float("inf"), device=device)
            distance[covered] = hits.distance
            image = torch.zeros((res, res, 3), device=device)
            image[covered] = colors
            filled = push_pull_fill_tensor(image, valid)
            texture = filled.round().clamp(0, 255).to(torch.uint8)
            result = BakeResult(texture=texture.cpu().numpy(), valid=valid.cpu().numpy(),
                                source_distance=distance.cpu().numpy())
    return result


def _blend(bary: Tensor, corners: Tensor) -> Tensor:
    """(N,3) weights x (N,3,C) corner values -> (N,C)."""
    return (bary[:, 0:1] * corners[:, 0] + bary[:, 1:2] * corners[:, 1]
            + bary[:, 2:3] * corners[:, 2])


def flame_uv_texels(
    template: FlameTemplate, resolution: int, device: torch.device, backend=None
) -> tuple[Tensor, Tensor, Tensor]:
    """The tile-0 UV raster of ``template`` on ``device``, cached (one template and size at a
    time): covered (R,R) bool, face (N,) int64 and bary (N,3) of the N covered texels in
    row-major order. Through ``backend`` when it lives on ``device``."""
    from reflame_core.texture.bake import flame_uv_raster

    key = (np.ascontiguousarray(template.uv, np.float32).tobytes(),
           np.ascontiguousarray(template.uv_faces, np.int64).tobytes(),
           int(resolution), str(device), type(backend).__name__)
    if key not in _DEVICE_TEXELS:
        _DEVICE_TEXELS.clear()
        if backend is not None and _same_device(backend.device, device):
            face_id, bary = rasterize_uv_tensors(backend, template.uv, template.uv_faces,
                                                 resolution, tile=0)
        else:
            raster = flame_uv_raster(template, resolution)
            face_id = torch.as_tensor(raster.face_id, device=device)
            bary = torch.as_tensor(raster.bary, device=device)
        covered = face_id >= 0
        _DEVICE_TEXELS[key] = (covered, face_id[covered], bary[covered])
    return _DEVICE_TEXELS[key]


_DEVICE_TEXELS: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}


def _same_device(a, b) -> bool:
    """Whether two device names are one device ("cuda" and "cuda:0" may be)."""
    return torch.empty(0, device=a).device == torch.empty(0, device=b).device


def scan_colors_tensor(scan: Scan, hits: SurfaceHits, device: torch.device) -> Tensor:
    """``bake.scan_colors`` for tensor hits: (N,3) float32 colours 0..255, zeros where no hit."""
    face = hits.face.clamp_min(0)
    if scan.has_texture:
        uv = torch.as_tensor(np.asarray(scan.uv, np.float32), device=device)
        uv_faces = torch.as_tensor(np.asarray(scan.uv_faces, np.int64), device=device)
        tex = np.ascontiguousarray(scan.texture)
        # torch refuses to wrap a read-only array without a warning; it is only read here.
        texture = torch.as_tensor(tex if tex.flags.writeable else tex.copy(), device=device)
        colors = sample_bilinear_tensor(texture, _blend(hits.bary, uv[uv_faces[face]]))
    else:
        vc = torch.as_tensor(np.asarray(scan.vertex_colors, np.float32), device=device)
        faces = torch.as_tensor(np.asarray(scan.faces, np.int64), device=device)
        colors = _blend(hits.bary, vc[faces[face]])
    return torch.where((hits.face >= 0)[:, None], colors, 0.0)


def sample_bilinear_tensor(texture: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup of ``texture`` (H,W,C) (any dtype), row 0 = top, at ``uv`` (N,2) OBJ
    convention -> (N,C) float32 in the texture's value range (``bake.sample_bilinear`` runs
    this on the CPU).

    Texel centres sit at ``((col + 0.5)/W, 1 - (row + 0.5)/H)``; lookups clamp to the edge.
    UVs outside [0,1] wrap (repeat), as renderers do by default."""
    h, w = texture.shape[:2]
    u, v = uv[:, 0], uv[:, 1]
    u = torch.where((u < 0) | (u > 1), torch.remainder(u, 1.0), u)
    v = torch.where((v < 0) | (v > 1), torch.remainder(v, 1.0), v)
    x = (u * w - 0.5).clamp(0.0, w - 1.0)
    y = ((1.0 - v) * h - 0.5).clamp(0.0, h - 1.0)
    x0 = x.floor().long().clamp_max(max(w - 2, 0))
    y0 = y.floor().long().clamp_max(max(h - 2, 0))
    x1 = (x0 + 1).clamp_max(w - 1)
    y1 = (y0 + 1).clamp_max(h - 1)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    flat = texture.reshape(h * w, -1)
    top = flat[y0 * w + x0] * (1 - fx) + flat[y0 * w + x1] * fx
    bottom = flat[y1 * w + x0] * (1 - fx) + flat[y1 * w + x1] * fx
    return (top * (1 - fy) + bottom * fy).float()
