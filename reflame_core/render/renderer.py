"""Differentiable multi-view mesh renderer on top of a rasterization backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from reflame_core.render.backends import get_backend
from reflame_core.render.cameras import OrbitCameras, device_matrices


@dataclass
class RenderOutput:
    """Images of the rendered views, row 0 = top (consistent with ``OrbitCameras.project``).

    Attributes:
        color: [B,H,W,3] texture colour (0..1), antialiased, 0 on background; None without a
            texture.
        mask: [B,H,W,1] antialiased coverage in [0,1], differentiable w.r.t. vertices.
        depth: [B,H,W,1] camera-space depth (units of the vertices), 0 where empty.
        attrs: name -> [B,H,W,C] interpolated vertex attributes, 0 where empty.
        tri_id: [B,H,W] int64 face index, -1 where empty.
        view_ids: the camera view index of each of the B images.
    """

    color: torch.Tensor | None
    mask: torch.Tensor
    depth: torch.Tensor
    attrs: dict[str, torch.Tensor] = field(default_factory=dict)
    tri_id: torch.Tensor | None = None
    view_ids: list[int] = field(default_factory=list)


class MeshRenderer:
    """Renders a triangle mesh from ``OrbitCameras`` with any backend of ``get_backend``.

    Args:
        cameras: the orbit cameras (resolution, matrices, enabled views).
        backend: "auto" | "nvdiffrast" | "torch" or a backend instance.
        device: torch device of the outputs.
    """

    def __init__(self, cameras: OrbitCameras, backend="auto", device: str | torch.device = "cpu"):
        self.cameras = cameras
        self.device = torch.device(device)
        self.backend = get_backend(backend, self.device) if isinstance(backend, str) else backend
        # (faces as passed, their version, (int32 faces, adjacency)) of the last two meshes.
        self._topo: list[tuple[torch.Tensor, int, tuple[torch.Tensor, object]]] = []

    def _faces(self, faces: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, object]:
        """Int32 faces on the device and their antialias adjacency, reused while the same,
        unchanged faces tensor comes back (the fitting loop renders the fit's faces every
        iteration, and the scan's now and then): comparing contents would make the host wait
        for the device every iteration."""
        if torch.is_tensor(faces):
            for src, version, cached in self._topo:  # holds src: no other tensor takes its id
                if src is faces and version == faces._version:
                    return cached
        faces_t = torch.as_tensor(np.asarray(faces) if not torch.is_tensor(faces) else faces,
                                  device=self.device).to(torch.int32)
        others = []
        found = None
        for entry in self._topo:  # the same faces in another tensor or array
            cached = entry[2]
            if found is None and cached[0].shape == faces_t.shape and torch.equal(
                    cached[0], faces_t):
                found = cached
            else:
                others.append(entry)
        found = found or (faces_t, self.backend.topology(faces_t))
        self._topo = [(faces, getattr(faces, "_version", 0), found), *others[:1]]
        return found

    def clip_positions(self, vertices: torch.Tensor, views: Sequence[int]) -> torch.Tensor:
        """[V,3] world -> [B,V,4] clip coordinates for the given views."""
        mvp = device_matrices(self.cameras.mvp()[np.asarray(list(views), dtype=int)],
                              vertices.dtype, vertices.device)
        return torch.einsum("bij,vj->bvi", mvp[:, :, :3], vertices) + mvp[:, None, :, 3]

    def render(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor | np.ndarray,
        *,
        uv: torch.Tensor | np.ndarray | None = None,
        uv_faces: torch.Tensor | np.ndarray | None = None,
        texture: torch.Tensor | None = None,
        attrs: dict[str, torch.Tensor] | None = None,
        views: Sequence[int] | None = None,
    ) -> RenderOutput:
        """Render ``vertices`` [V,3] (float, canonical frame) with ``faces`` [F,3].

        Args:
            uv: [T,2] OBJ-convention UVs (v up) and uv_faces [F,3], with texture [Ht,Wt,3]
                float 0..1, row 0 = top (image convention): enable ``color``.
            attrs: name -> [V,C] per-vertex attributes to interpolate.
            views: camera view indices; default the enabled views.
        """
        dev = self.device
        view_ids = self.cameras.enabled_indices() if views is None else [int(v) for v in views]
        if not view_ids:
            raise ValueError("no views to render: every camera view is disabled")
        vertices = torch.as_tensor(vertices, device=dev, dtype=torch.float32)
        faces_t, topo = self._faces(faces)
        pos = self.clip_positions(vertices, view_ids)
        be = self.backend
        rast = be.rasterize(pos, faces_t, self.cameras.image_size)
        covered = (rast[..., 3:4] > 0).float()

        # One interpolate call for depth (clip w = camera depth) and every user attribute.
        names = list(attrs or {})
        per_view = [pos[..., 3:4]]
        per_view += [torch.as_tensor(attrs[n], device=dev, dtype=torch.float32)[None]
                     .expand(pos.shape[0], -1, -1) for n in names]
        widths = [a.shape[-1] for a in per_view]
        interp = be.interpolate(torch.cat(per_view, -1).contiguous(), rast, faces_t)
        parts = torch.split(interp, widths, dim=-1)

        color = None
        if texture is not None:
            if uv is None or uv_faces is None:
                raise ValueError("a texture needs uv and uv_faces")
            uv_t = torch.as_tensor(uv, device=dev, dtype=torch.float32)
            uv_t = torch.stack([uv_t[:, 0], 1.0 - uv_t[:, 1]], -1)  # OBJ v-up -> texture rows
            uvf = torch.as_tensor(uv_faces, device=dev).to(torch.int32)
            tex_uv = be.interpolate(uv_t.contiguous(), rast, uvf)
            tex = torch.as_tensor(texture, device=dev, dtype=torch.float32)[None]
            shaded = be.texture(tex.contiguous(), tex_uv) * covered
            color = be.antialias(shaded, rast, pos, faces_t, topo).flip(1)
        mask = be.antialias(covered, rast, pos, faces_t, topo).flip(1)
        return RenderOutput(
            color=color,
            mask=mask,
            depth=parts[0].flip(1),
            attrs={n: p.flip(1) for n, p in zip(names, parts[1:], strict=True)},
            tri_id=(rast[..., 3].detach().long() - 1).flip(1),
            view_ids=view_ids,
        )
