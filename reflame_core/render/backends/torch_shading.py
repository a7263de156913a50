"""Pure-PyTorch ``interpolate`` and ``texture`` with nvdiffrast's shapes and conventions."""

from __future__ import annotations

import torch

from reflame_core.render.backends.gather import gather_rows


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Interpolate vertex attributes with the barycentrics in ``rast``.

    Args:
        attr: [V,C] or [B|1,V,C] per-vertex attributes.
        rast: [B,H,W,4] from ``rasterize`` (u, v weight tri corners 0, 1; corner 2 gets 1-u-v).
        tri: [F,3] int vertex indices into ``attr`` (may differ from the rasterized ``tri`` as
            long as it has the same faces, e.g. UV faces).
    Returns:
        [B,H,W,C]; zeros where ``rast`` is empty. Differentiable w.r.t. ``attr`` and rast's u, v.
    """
    batch, height, width, _ = rast.shape
    if attr.dim() == 2:
        attr = attr[None]
    if attr.dim() != 3 or attr.shape[0] not in (1, batch):
        raise ValueError(f"attr must be [V,C] or [1|{batch},V,C], got {tuple(attr.shape)}")
    channels = attr.shape[-1]
    flat = rast.reshape(-1, 4)
    pix = torch.nonzero(flat[:, 3] > 0).squeeze(1)
    face = flat[pix, 3].long() - 1
    corner = tri.to(device=rast.device, dtype=torch.int64)[face]  # [M,3]
    if attr.shape[0] == 1:
        values = gather_rows(attr[0], corner)  # [M,3,C]
    else:
        first = (pix // (height * width))[:, None] * attr.shape[1]
        values = gather_rows(attr.reshape(-1, channels), first + corner)
    uv = flat.index_select(0, pix)
    u, v = uv[:, 0:1], uv[:, 1:2]
    out = u * values[:, 0] + v * values[:, 1] + (1.0 - u - v) * values[:, 2]
    dense = torch.zeros(batch * height * width, channels, dtype=out.dtype, device=out.device)
    return dense.index_put((pix,), out).view(batch, height, width, channels)


def texture(tex: torch.Tensor, uv: torch.Tensor, boundary_mode: str = "wrap") -> torch.Tensor:
    """Bilinear texture lookup (nvdiffrast's ``filter_mode='linear'``).

    Args:
        tex: [B|1,Ht,Wt,C]; texel (i, j) has its centre at uv ((j+0.5)/Wt, (i+0.5)/Ht), i.e.
            row 0 is v = 0 (no flip, as in nvdiffrast).
        uv: [B,H,W,2].
        boundary_mode: "wrap" (nvdiffrast's default) or "clamp".
    Returns:
        [B,H,W,C], differentiable w.r.t. ``tex`` and ``uv``.
    """
    if tex.dim() != 4 or uv.dim() != 4 or uv.shape[-1] != 2:
        raise ValueError(f"tex must be [B,Ht,Wt,C] and uv [B,H,W,2], got {tuple(tex.shape)}, "
                         f"{tuple(uv.shape)}")
    batch, height, width, _ = uv.shape
    tb, th, tw, channels = tex.shape
    if tb not in (1, batch):
        raise ValueError(f"tex batch {tb} must be 1 or {batch}")
    x = uv[..., 0].reshape(batch, -1) * tw - 0.5
    y = uv[..., 1].reshape(batch, -1) * th - 0.5
    xf = torch.floor(x.detach())
    yf = torch.floor(y.detach())
    fx = (x - xf)[..., None]
    fy = (y - yf)[..., None]
    xi, yi = xf.long(), yf.long()
    if boundary_mode == "wrap":
        cols = (xi % tw, (xi + 1) % tw)
        rows = (yi % th, (yi + 1) % th)
    elif boundary_mode == "clamp":
        cols = (xi.clamp(0, tw - 1), (xi + 1).clamp(0, tw - 1))
        rows = (yi.clamp(0, th - 1), (yi + 1).clamp(0, th - 1))
    else:
        raise ValueError(f"boundary_mode must be 'wrap' or 'clamp', got {boundary_mode!r}")
    flat = tex.reshape(-1, channels)
    base = 0 if tb == 1 else (torch.arange(batch, device=uv.device) * (th * tw))[:, None]

    def fetch(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return gather_rows(flat, base + r * tw + c)

    top = fetch(rows[0], cols[0]) * (1 - fx) + fetch(rows[0], cols[1]) * fx
    bottom = fetch(rows[1], cols[0]) * (1 - fx) + fetch(rows[1], cols[1]) * fx
    return (top * (1 - fy) + bottom * fy).view(batch, height, width, channels)
