"""Loss terms of the geometric fit: plain tensors in, a scalar tensor out.

Images follow the renderer's ``[B,H,W,C]`` layout; pixel coordinates are in pixels; lengths in
canonical units. Each term is a weighted mean, so its size does not depend on how many views
or pixels take part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

_EPS = 1e-8


def _wmean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / (weights.sum() + _EPS)


def landmark_2d(
    pred_px: torch.Tensor, target_px: torch.Tensor, weight: torch.Tensor, resolution: int
) -> torch.Tensor:
    """Reprojection error, in fractions of the image size.

    Args:
        pred_px, target_px: (B,L,2) pixel positions of the fit's and the scan's landmarks.
        weight: (B,L) per view and landmark; 0 where the landmark is not visible in the view.
        resolution: image side in pixels.
    """
    dist = (pred_px - target_px).abs().sum(-1) / resolution
    return _wmean(dist, weight)


def landmark_3d(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean Euclidean distance between (L,3) landmark sets; weight (L,)."""
    return _wmean((pred - target).norm(dim=-1), weight)


def mask_l1(mask: torch.Tensor, target: torch.Tensor, pixel_weight: torch.Tensor) -> torch.Tensor:
    """Mean weighted absolute silhouette difference of [B,H,W,1] coverage images.

    The mean runs over all pixels, so a weight below 1 lowers the term rather than
    re-weighing the rest.
    """
    return ((mask - target).abs() * pixel_weight).mean()


def depth_l1(
    depth: torch.Tensor, target: torch.Tensor, covered: torch.Tensor, pixel_weight: torch.Tensor
) -> torch.Tensor:
    """Mean |depth - target| over pixels both renders cover.

    Args:
        depth, target: [B,H,W,1] camera-space depth.
        covered: [B,H,W,1] bool, pixels covered by fit and scan.
        pixel_weight: [B,H,W,1] region weight interpolated over the fit's surface.
    """
    return _wmean((depth - target).abs(), covered * pixel_weight)


def dense_l1(
    positions: torch.Tensor, target: torch.Tensor, covered: torch.Tensor, pixel_weight: torch.Tensor
) -> torch.Tensor:
    """Geometric dense correspondence: per-pixel distance of rendered 3D positions.

    Args:
        positions, target: [B,H,W,3] surface points seen through each pixel.
        covered: [B,H,W,1] bool where both are defined (and the cue is confident).
        pixel_weight: [B,H,W,1].
    """
    return _wmean((positions - target).norm(dim=-1, keepdim=True), covered * pixel_weight)


def erode(mask: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    """Shrink a [B,H,W,1] bool mask by ``pixels``.

    Depth and dense terms skip the silhouette rim: there the two renders may pick different
    triangles (grazing slivers, ties), whose barycentric gradients are huge and unstable.
    """
    if pixels <= 0:
        return mask
    x = (~mask).permute(0, 3, 1, 2).float()
    grown = torch.nn.functional.max_pool2d(x, 2 * pixels + 1, stride=1, padding=pixels)
    return (grown < 0.5).permute(0, 2, 3, 1)


def nearest(
    queries: torch.Tensor, points: torch.Tensor, tree: cKDTree | None = None
) -> torch.Tensor:
    """Index (Q,) of the nearest of ``points`` (P,3) to each of ``queries`` (Q,3); no gradient.

    A k-d tree on the CPU; blocks of brute-force distances on a GPU, where they are cheaper
    than a round trip to the host.
    """
    if queries.is_cuda:
        # argmin |q - p|^2 = argmin (|p|^2 - 2 q.p): one matrix product and one reduction per
        # block, without cdist's square root and clamping of every distance.
        pts = points.detach()
        out = torch.empty(len(queries), dtype=torch.long, device=queries.device)
        sq = (pts * pts).sum(1)[None, :]
        for start in range(0, len(queries), 8192):
            block = queries[start : start + 8192].detach()
            out[start : start + 8192] = torch.addmm(sq, block, pts.T, alpha=-2.0).argmin(dim=1)
        return out
    if tree is None:
        from scipy.spatial import cKDTree  # CPU only: a GPU fit never loads scipy's trees

        tree = cKDTree(points.detach().numpy())
    _, idx = tree.query(queries.detach().numpy(), workers=-1)
    return torch.from_numpy(np.asarray(idx, np.int64))


def surface_terms(
    verts: torch.Tensor,
    vert_normals: torch.Tensor,
    vert_weight: torch.Tensor,
    samples: torch.Tensor,
    sample_normals: torch.Tensor,
    *,
    max_distance: float,
    min_normal_cos: float,
    sample_tree: cKDTree | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-to-surface distances both ways, with normal compatibility and a distance cut.

    Args:
        verts: (V,3) fitted vertices (differentiable).
        vert_normals: (V,3) their unit normals (used only to accept or reject pairs).
        vert_weight: (V,) region weights; a scan sample takes the weight of its nearest vertex.
        samples, sample_normals: (S,3) points on the scan surface and their unit normals.
        max_distance: pairs farther apart are ignored (shoulders, stray hair).
        min_normal_cos: pairs whose normals disagree more are ignored (the other side of an
            ear or a lip).
        sample_tree: optional k-d tree over ``samples`` (CPU), reused between steps.

    Returns:
        (fit_to_scan, scan_to_fit): fit vertices to the scan's tangent planes, and scan samples
        to their nearest fit vertex; weighted means.
    """
    idx = nearest(verts, samples, sample_tree)
    n = sample_normals[idx]
    plane = ((verts - samples[idx]) * n).sum(-1).abs()
    ok = ((vert_normals * n).sum(-1) > min_normal_cos) & (plane < max_distance)
    fit_to_scan = _wmean(plane, vert_weight * ok)

    back = nearest(samples, verts)
    dist = (samples - verts[back]).norm(dim=-1)
    ok_back = ((vert_normals[back] * sample_normals).sum(-1) > min_normal_cos) & (
        dist < max_distance
    )
    scan_to_fit = _wmean(dist, vert_weight[back] * ok_back)
    return fit_to_scan, scan_to_fit


def vertex_normals_torch(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V,3) area-weighted unit vertex normals of a torch mesh (faces (F,3) int64)."""
    tri = verts[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    n = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
