"""Place FLAME's two eyeball spheres in the fitted eye sockets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.regions import LEFT_EYEBALL, RIGHT_EYEBALL
from reflame_core.fit.stages.base import FitStage

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession


class EyeballStage(FitStage):
    """One iteration: each eyeball follows how its eye socket moved from the template.

    The socket is every head vertex within ``socket_radius`` eyeball radii of the template's
    eyeball centre (lids, corners, brow and cheek around the eye). An affine map (least
    squares) takes the template's socket to the fitted one; the eyeball centre goes where
    that map takes it, so per-axis proportions and the local deformation both carry over.
    The eyeball stays a sphere: it turns by the map's rotation and scales by the cube root
    of its determinant, one scale for both eyes so they stay the same size.
    """

    name = "eyeballs"

    def num_steps(self, session: FitSession) -> int:
        return 1

    def step(self, session: FitSession) -> dict[str, float]:
        reach = float(self.params(session)["socket_radius"])
        tmpl = session.template_vertices.cpu().numpy().astype(np.float64)
        fitted = session.vertices.detach().cpu().numpy().astype(np.float64)
        head = ~session.eyeball_mask.cpu().numpy()
        placed = []
        for ball in (LEFT_EYEBALL, RIGHT_EYEBALL):
            centre = tmpl[ball].mean(0)
            radius = float(np.linalg.norm(tmpl[ball] - centre, axis=1).mean())
            socket = head & (np.linalg.norm(tmpl - centre, axis=1) < reach * radius)
            linear, shift = _affine(tmpl[socket] - centre, fitted[socket])
            u, _, vt = np.linalg.svd(linear)
            rotation = u @ vt
            if np.linalg.det(rotation) < 0:  # a reflection is no eyeball's motion
                u[:, -1] *= -1
                rotation = u @ vt
            scale = abs(float(np.linalg.det(linear))) ** (1.0 / 3.0)
            placed.append((ball, centre, shift, rotation, scale))
        scale = float(np.mean([p[4] for p in placed]))
        moved = 0.0
        for ball, centre, shift, rotation, _ in placed:
            new = shift + scale * (tmpl[ball] - centre) @ rotation.T
            moved += float(np.linalg.norm(new - fitted[ball], axis=1).mean()) / 2
            fitted[ball] = new
        session.vertices = torch.from_numpy(fitted.astype(np.float32)).to(session.device)
        return {"eyeball_shift": moved, "eyeball_scale": scale}


def _affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``dst ~ src @ linear.T + shift`` for (N,3) point sets; (3,3), (3,)."""
    rows = np.c_[src, np.ones(len(src))]
    solution, *_ = np.linalg.lstsq(rows, dst, rcond=None)
    return solution[:3].T, solution[3]
