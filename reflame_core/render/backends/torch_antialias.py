"""Pure-PyTorch analytic silhouette antialiasing with the effect of nvdiffrast's ``antialias``.

Why: a rasterized mask is piecewise constant in the vertex positions, so a silhouette loss
has no gradient. Like nvdiffrast (Laine et al. 2020, "Modular primitives for high-performance
differentiable rendering"), every pair of horizontally or vertically neighbouring pixels with
different triangle ids is a possible discontinuity. The front triangle of the pair (nearer one,
or the only one) is looked at from the centre of the pixel it covers; among its edges that cross
the line to the neighbour's centre, the nearest-to-the-neighbour crossing ``dc`` in [0,1]
(pixel units along that line) is used if the edge is a silhouette edge (a boundary edge, or
the triangle across it lies on the same side in screen space, i.e. the surface folds away)
and is more across than along the line. The front colour then spills into the neighbour by
``dc - 0.5`` (or the neighbour's colour into the front pixel by ``0.5 - dc``)::

    out[target] += alpha * (color[p1] - color[p0]),   alpha = ds * (0.5 - dc)

with ds = +1 when the front triangle is p0's. Which pairs and edges take part is decided
without gradients; ``dc`` is then recomputed from ``pos_clip`` with autograd, so the gradient
w.r.t. the two edge vertices (and w.r.t. both colours) is the analytic one of this formula,
which is what nvdiffrast's backward pass computes.
"""

from __future__ import annotations

import torch

from reflame_core.render.backends.gather import gather_rows
from reflame_core.render.backends.topology import edge_opposites

_EDGE_EPS = 1.0 / 16.0  # accept crossings this far outside [0,1] pixel (float slop), as nvdiffrast


def antialias(
    color: torch.Tensor,
    rast: torch.Tensor,
    pos_clip: torch.Tensor,
    tri: torch.Tensor,
    opposites: torch.Tensor | None = None,
) -> torch.Tensor:
    """Blend colours across silhouette edges by the analytic edge crossing.

    Args:
        color: [B,H,W,C] shaded image in rast layout (row 0 = clip y -1).
        rast: [B,H,W,4] from ``rasterize`` with the same ``pos_clip`` and ``tri``.
        pos_clip: [B,V,4] clip-space positions.
        tri: [F,3] int vertex indices.
        opposites: [F,3] from ``edge_opposites(tri)``; computed when None (pass it to reuse).
    Returns:
        [B,H,W,C], differentiable w.r.t. ``color`` and ``pos_clip``.
    """
    batch, height, width, channels = color.shape
    tri = tri.to(device=color.device, dtype=torch.int64)
    if opposites is None:
        opposites = edge_opposites(tri)
    flat = color.reshape(-1, channels)
    out = flat
    for vertical in (False, True):
        pairs = _discontinuities(rast, vertical)
        if pairs is None:
            continue
        p0, p1, ref, ds, face, edge, target = _select_edges(
            rast, pos_clip, tri, opposites, pairs, vertical
        )
        if p0.numel() == 0:
            continue
        dc = _crossing(pos_clip, tri, ref, face, edge, vertical, height, width, ds)
        alpha = ds * (0.5 - dc.clamp(0.0, 1.0))
        step = gather_rows(flat, p1) - gather_rows(flat, p0)
        out = out.index_add(0, target, alpha[:, None] * step)
    return out.view(batch, height, width, channels)


def _discontinuities(rast: torch.Tensor, vertical: bool) -> tuple[torch.Tensor, int] | None:
    """Flat indices p0 of pixels whose right (or lower) neighbour has another triangle id."""
    _, height, width, _ = rast.shape
    tid = rast[..., 3]
    if vertical:
        diff = tid[:, :-1, :] != tid[:, 1:, :]
        step = width
    else:
        diff = tid[:, :, :-1] != tid[:, :, 1:]
        step = 1
    idx = torch.nonzero(diff)
    if idx.numel() == 0:
        return None
    p0 = (idx[:, 0] * height + idx[:, 1]) * width + idx[:, 2]
    return p0, step


def _pixel_xy(
    points: torch.Tensor, ref: torch.Tensor, height: int, width: int, vertical: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip points [M,K,4] -> pixel coordinates relative to the centre of pixel ``ref`` [M];
    swapped for vertical pairs so the pair always lies along +x."""
    x = (points[..., 0] / points[..., 3] + 1.0) * (0.5 * width) - ((ref % width)[:, None] + 0.5)
    y = (points[..., 1] / points[..., 3] + 1.0) * (0.5 * height) - (
        ((ref // width) % height)[:, None] + 0.5
    )
    return (y, x) if vertical else (x, y)


@torch.no_grad()
def _select_edges(rast, pos_clip, tri, opposites, pairs, vertical):
    """Decide, without gradients, which pairs get blended and by which edge of which triangle."""
    batch, height, width, _ = rast.shape
    p0, step = pairs
    p1 = p0 + step
    flat = rast.reshape(-1, 4)
    t0, t1 = flat[p0, 3], flat[p1, 3]
    use0 = (t0 > 0) & ((t1 == 0) | (flat[p0, 2] < flat[p1, 2]))
    ref = torch.where(use0, p0, p1)
    ds = use0.to(pos_clip.dtype) * 2.0 - 1.0
    face = flat[ref, 3].long() - 1
    b = ref // (height * width)
    pos = pos_clip.detach()
    corners = pos[b[:, None], tri[face]]  # [M,3,4]
    opp = opposites[face]
    wings = torch.where((opp >= 0)[..., None], pos[b[:, None], opp.clamp(min=0)], corners)
    x, y = _pixel_xy(torch.cat([corners, wings], 1), ref, height, width, vertical)
    cx, cy, ox, oy = x[:, :3], y[:, :3], x[:, 3:], y[:, 3:]
    j, k = [1, 2, 0], [2, 0, 1]  # edge i joins corners j[i], k[i]

    def orient(ax, ay, bx, by, qx, qy):
        return (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)

    own = orient(cx[:, j], cy[:, j], cx[:, k], cy[:, k], cx, cy)  # corner i vs edge i
    wing = orient(cx[:, j], cy[:, j], cx[:, k], cy[:, k], ox, oy)
    silhouette = (own >= 0) == (wing >= 0)
    dx, dy = cx[:, k] - cx[:, j], cy[:, k] - cy[:, j]
    spans = (cy[:, j] >= 0) != (cy[:, k] >= 0)
    safe_dy = torch.where(spans, dy, torch.ones_like(dy))
    cross = ds[:, None] * (cx[:, j] - cy[:, j] * dx / safe_dy)
    cross = torch.where(spans, cross, torch.full_like(cross, -float("inf")))
    dc, edge = cross.max(dim=1)
    pick = edge[:, None]
    ok = silhouette.gather(1, pick)[:, 0] & (dy.abs() >= dx.abs()).gather(1, pick)[:, 0]
    ok &= (dc > -_EDGE_EPS) & (dc < 1.0 + _EDGE_EPS)
    keep = torch.nonzero(ok).squeeze(1)
    alpha = ds[keep] * (0.5 - dc[keep].clamp(0.0, 1.0))
    target = torch.where(alpha > 0, p0[keep], p1[keep])
    return p0[keep], p1[keep], ref[keep], ds[keep], face[keep], edge[keep], target


def _crossing(pos_clip, tri, ref, face, edge, vertical, height, width, ds):
    """Differentiable crossing position dc [M] (pixel units from the front pixel's centre
    towards its neighbour) of the chosen edge."""
    b = ref // (height * width)
    ends = torch.stack([tri[face, (edge + 1) % 3], tri[face, (edge + 2) % 3]], 1)  # [M,2]
    corners = gather_rows(pos_clip.reshape(-1, 4), b[:, None] * pos_clip.shape[1] + ends)
    x, y = _pixel_xy(corners, ref, height, width, vertical)
    dy = y[:, 1] - y[:, 0]
    return ds * (x[:, 0] - y[:, 0] * (x[:, 1] - x[:, 0]) / dy)
