"""Pure-PyTorch z-buffer rasterizer with nvdiffrast's output layout.

Visibility is found without gradients: every triangle enumerates the pixel centres of its
screen bounding box (all triangles of all views at once, in chunks of bounded size, no Python
loop per triangle), tests them with its edge functions, and a single ``scatter_reduce(amin)``
over a packed (depth, triangle) int64 key keeps the nearest triangle per pixel (ties go to the
lower triangle id, deterministically). Then, for the winning triangle of each covered pixel only,
the perspective-correct barycentrics (u, v) are recomputed from ``pos_clip`` with autograd, so
gradients reach the vertices through ``interpolate`` as with nvdiffrast.

Differences from nvdiffrast: triangles with a vertex behind the camera (w <= 0) are dropped
instead of clipped (orbit cameras never see such triangles); the z/w channel carries no gradient
(nvdiffrast's does not either); coverage of pixel centres exactly on an edge is inclusive.
"""

from __future__ import annotations

import torch

from reflame_core.render.backends.gather import gather_rows

_CHUNK = 1 << 22  # candidate (pixel, triangle) pairs per chunk: bounds memory at ~0.5 GB
_VIEW_FACES = 1 << 22  # triangles (over all views) set up at once: bounds memory at ~0.5 GB
_EMPTY = torch.iinfo(torch.int64).max
_INSIDE_EPS = 1e-6  # barycentric slack so shared edges leave no cracks


def _sortable_int(z: torch.Tensor) -> torch.Tensor:
    """int64 that orders like the float32 ``z`` (IEEE bits, negatives flipped)."""
    bits = z.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def rasterize(
    pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]
) -> torch.Tensor:
    """Rasterize triangles into nvdiffrast's ``rast`` layout.

    Args:
        pos_clip: [B,V,4] float clip-space positions (OpenGL).
        tri: [F,3] int32/int64 vertex indices.
        resolution: (H, W) pixels.
    Returns:
        rast [B,H,W,4] (dtype of pos_clip): (u, v, z/w, triangle_id + 1), zeros where empty.
        Row 0 is clip y = -1 (bottom of the image), pixel centres at (i + 0.5) / H * 2 - 1.
        (u, v) weight vertices 0 and 1 of the triangle (perspective-correct) and are
        differentiable w.r.t. ``pos_clip``.
    """
    if pos_clip.dim() != 3 or pos_clip.shape[-1] != 4:
        raise ValueError(f"pos_clip must be [B,V,4], got {tuple(pos_clip.shape)}")
    if tri.dim() != 2 or tri.shape[-1] != 3:
        raise ValueError(f"tri must be [F,3], got {tuple(tri.shape)}")
    height, width = int(resolution[0]), int(resolution[1])
    batch, num_faces = pos_clip.shape[0], tri.shape[0]
    tri = tri.to(device=pos_clip.device, dtype=torch.int64)
    # Views in groups of at most _VIEW_FACES triangles in all: the per-triangle tables of all
    # 26 detection views of a million-face scan at once would take gigabytes.
    step = max(1, _VIEW_FACES // max(num_faces, 1))
    pos = pos_clip.detach().float()
    winner = torch.cat([_visible_triangles(pos[i : i + step], tri, height, width)
                        for i in range(0, batch, step)])  # [B*H*W]
    pix = torch.nonzero(winner != _EMPTY).squeeze(1)
    flat_tri = (winner[pix] & 0xFFFFFFFF)  # index into B*F
    face = flat_tri % num_faces
    b = pix // (height * width)
    rows = (pix // width) % height
    cols = pix % width
    xn = (cols.to(pos_clip.dtype) + 0.5) * (2.0 / width) - 1.0
    yn = (rows.to(pos_clip.dtype) + 0.5) * (2.0 / height) - 1.0
    corners = gather_rows(pos_clip.reshape(-1, 4), b[:, None] * pos_clip.shape[1] + tri[face])
    bary = _perspective_barycentrics(corners, xn, yn)  # [M,3]
    zw = ((bary * corners[..., 2]).sum(-1) / (bary * corners[..., 3]).sum(-1)).detach()
    vals = torch.stack([bary[:, 0], bary[:, 1], zw, (face + 1).to(bary.dtype)], dim=-1)
    rast = torch.zeros(batch * height * width, 4, dtype=vals.dtype, device=vals.device)
    rast = rast.index_put((pix,), vals)
    return rast.view(batch, height, width, 4)


def _perspective_barycentrics(
    corners: torch.Tensor, xn: torch.Tensor, yn: torch.Tensor
) -> torch.Tensor:
    """[M,3] perspective-correct barycentrics of NDC points (xn, yn) [M] in triangles whose clip
    corners are ``corners`` [M,3,4]: weights b with sum b_i (x_i, y_i, w_i) ∝ (xn, yn, 1)."""
    h = corners[..., [0, 1, 3]]  # homogeneous 2D: (x, y, w)
    q = torch.stack([xn, yn, torch.ones_like(xn)], dim=-1)
    raw = torch.stack(
        [
            (q * torch.linalg.cross(h[:, 1], h[:, 2])).sum(-1),
            (q * torch.linalg.cross(h[:, 2], h[:, 0])).sum(-1),
            (q * torch.linalg.cross(h[:, 0], h[:, 1])).sum(-1),
        ],
        dim=-1,
    )
    return raw / raw.sum(-1, keepdim=True)


@torch.no_grad()
def _visible_triangles(
    pos: torch.Tensor, tri: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """[B*H*W] int64 packed key (sortable depth << 32 | flat triangle b*F+f), _EMPTY if none."""
    batch, num_faces = pos.shape[0], tri.shape[0]
    v = pos[:, tri]  # [B,F,3,4]
    w = v[..., 3]
    ok = (w > 0).all(-1)
    w = torch.where(ok[..., None], w, torch.ones_like(w))
    sx = (v[..., 0] / w * 0.5 + 0.5) * width  # pixel-space x of the corners [B,F,3]
    sy = (v[..., 1] / w * 0.5 + 0.5) * height
    sz = v[..., 2] / w
    x0 = torch.ceil(sx.min(-1).values - 0.5).clamp(min=0)
    x1 = torch.floor(sx.max(-1).values - 0.5).clamp(max=width - 1)
    y0 = torch.ceil(sy.min(-1).values - 0.5).clamp(min=0)
    y1 = torch.floor(sy.max(-1).values - 0.5).clamp(max=height - 1)
    # Edge functions relative to the bounding box's first pixel: in whole-image coordinates
    # their constant terms are differences of products of hundreds of pixels, which cancel
    # to noise in single precision for a triangle a fraction of a pixel wide (a scan of a
    # million faces): pixels were given to triangles that do not cover them.
    lx = sx - x0[..., None]
    ly = sy - y0[..., None]
    # Edge functions normalised by the signed area give screen-space barycentrics directly.
    area = (lx[..., 1] - lx[..., 0]) * (ly[..., 2] - ly[..., 0]) - (lx[..., 2] - lx[..., 0]) * (
        ly[..., 1] - ly[..., 0]
    )
    ok &= area.abs() > 1e-12
    inv = torch.where(ok, 1.0 / torch.where(ok, area, torch.ones_like(area)), 0.0)
    coef = []  # b_i(x, y) = a_i x + c_i y + d_i for i = 0, 1, (x, y) from (x0, y0)
    for i in (0, 1):
        j, k = (i + 1) % 3, (i + 2) % 3
        a = (ly[..., j] - ly[..., k]) * inv
        c = (lx[..., k] - lx[..., j]) * inv
        d = (lx[..., j] * ly[..., k] - lx[..., k] * ly[..., j]) * inv
        coef += [a, c, d]
    ok &= (x1 >= x0) & (y1 >= y0)
    ok &= ~((sz < -1).all(-1) | (sz > 1).all(-1))  # entirely outside the near/far range
    tri_idx = torch.nonzero(ok.reshape(-1)).squeeze(1)  # flat b*F+f
    bw = (x1 - x0 + 1).reshape(-1)[tri_idx].long()
    bh = (y1 - y0 + 1).reshape(-1)[tri_idx].long()
    counts = bw * bh
    # Per-triangle table gathered once per candidate: x0, y0, bw, 6 edge coefs, 3 depths.
    table = torch.stack(
        [x0, y0, (x1 - x0 + 1), *coef, sz[..., 0], sz[..., 1], sz[..., 2]], dim=-1
    ).reshape(-1, 12)[tri_idx]
    best = torch.full((batch * height * width,), _EMPTY, dtype=torch.int64, device=pos.device)
    ends = torch.cumsum(counts, 0)
    start_tri = 0
    while start_tri < tri_idx.numel():
        base = int(ends[start_tri - 1]) if start_tri > 0 else 0
        stop = int(torch.searchsorted(ends, base + _CHUNK, right=True))
        stop = max(stop, start_tri + 1)
        _rasterize_chunk(
            best, table[start_tri:stop], counts[start_tri:stop], tri_idx[start_tri:stop],
            num_faces, height, width,
        )
        start_tri = stop
    return best


def _rasterize_chunk(
    best: torch.Tensor,
    table: torch.Tensor,
    counts: torch.Tensor,
    tri_idx: torch.Tensor,
    num_faces: int,
    height: int,
    width: int,
) -> None:
    """Depth-test the candidate pixels of a group of triangles into ``best`` (in place)."""
    local_tri = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    offset = torch.arange(local_tri.numel(), device=counts.device) - starts[local_tri]
    t = table[local_tri]  # [N,12]
    bw = t[:, 2].long()
    lx = (offset % bw).to(t.dtype) + 0.5  # pixel centre from the bounding box's first pixel
    ly = (offset // bw).to(t.dtype) + 0.5
    px = t[:, 0] + lx
    py = t[:, 1] + ly
    b0 = t[:, 3] * lx + t[:, 4] * ly + t[:, 5]
    b1 = t[:, 6] * lx + t[:, 7] * ly + t[:, 8]
    b2 = 1.0 - b0 - b1
    z = b0 * t[:, 9] + b1 * t[:, 10] + b2 * t[:, 11]
    inside = (b0 >= -_INSIDE_EPS) & (b1 >= -_INSIDE_EPS) & (b2 >= -_INSIDE_EPS)
    inside &= (z >= -1.0) & (z <= 1.0)
    sel = torch.nonzero(inside).squeeze(1)
    flat_tri = tri_idx[local_tri[sel]]
    batch_idx = flat_tri // num_faces
    pixel = (batch_idx * height + (py[sel] - 0.5).long()) * width + (px[sel] - 0.5).long()
    key = (_sortable_int(z[sel]) << 32) | flat_tri
    best.scatter_reduce_(0, pixel, key, reduce="amin")
