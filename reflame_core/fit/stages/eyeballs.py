"""Place FLAME's two eyeball spheres in the fitted eye sockets."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.eye_surface import cap_shift, exposed_cap
from reflame_core.fit.regions import LEFT_EYEBALL, RIGHT_EYEBALL
from reflame_core.fit.stages.base import FitStage
from reflame_core.geometry.surface_query import MeshQuery

if TYPE_CHECKING:
    from reflame_core.assets.flame import FlameTemplate
    from reflame_core.fit.session import FitSession


class EyeballStage(FitStage):
    """One iteration: each eyeball follows how its eye socket moved from the template.

    The socket is every head vertex within ``socket_radius`` eyeball radii of the template's
    eyeball centre (lids, corners, brow and cheek around the eye). An affine map (least
    squares) takes the template's socket to the fitted one; the eyeball centre goes where
    that map takes it, so per-axis proportions and the local deformation both carry over.

    ``shape`` says what the eyeball itself does:

    - ``"socket"`` (default): it deforms as its socket did, by the map's linear part, as
      FLAME's linear shape space moves eyeball vertices with the head (wider proportions
      widen the eyeball a little). Each singular value of the map is held within
      ``MAX_STRETCH`` of their geometric mean, so a poorly fitted socket cannot squash it.
    - ``"sphere"``: it stays a sphere: it turns by the map's rotation and scales by the cube
      root of its determinant, one scale for both eyes so they stay the same size.

    Then, with ``scan_surface`` on, each eyeball moves so that the part of it seen between
    the lids lies on the scan's eye surface (``fit/eye_surface.py``), by at most
    ``max_surface_shift`` eyeball radii; an eye the scan does not show stays where its socket
    put it, and the step's event says so.
    """

    name = "eyeballs"
    MAX_STRETCH = 1.25

    def num_steps(self, session: FitSession) -> int:
        return 1

    def step(self, session: FitSession) -> dict[str, float]:
        p = self.params(session)
        reach = float(p["socket_radius"])
        follow_socket = str(p.get("shape", "socket")) == "socket"
        tmpl = session.template_vertices.cpu().numpy().astype(np.float64)
        fitted = session.vertices.detach().cpu().numpy().astype(np.float64)
        head = ~session.eyeball_mask.cpu().numpy()
        placed = []
        for ball in (LEFT_EYEBALL, RIGHT_EYEBALL):
            centre = tmpl[ball].mean(0)
            radius = float(np.linalg.norm(tmpl[ball] - centre, axis=1).mean())
            socket = head & (np.linalg.norm(tmpl - centre, axis=1) < reach * radius)
            linear, shift = _affine(tmpl[socket] - centre, fitted[socket])
            u, sv, vt = np.linalg.svd(linear)
            if np.linalg.det(u @ vt) < 0:  # a reflection is no eyeball's motion
                u[:, -1] *= -1
            scale = float(np.prod(sv)) ** (1.0 / 3.0)
            stretch = np.clip(sv, scale / self.MAX_STRETCH, scale * self.MAX_STRETCH)
            placed.append((ball, centre, shift, u, stretch, vt, scale))
        mean_scale = float(np.mean([q[6] for q in placed]))
        moved, on_scan = 0.0, []
        scan = session.scan_canonical
        scan_centroids = scan.vertices[scan.faces].mean(1) if p["scan_surface"] else None
        for ball, centre, shift, u, stretch, vt, _ in placed:
            linear = (u * stretch) @ vt if follow_socket else mean_scale * (u @ vt)
            new = shift + (tmpl[ball] - centre) @ linear.T
            if p["scan_surface"]:
                radius = float(np.linalg.norm(new - shift, axis=1).mean())
                near = _faces_near(scan.vertices, scan.faces, scan_centroids, shift, radius)
                to_surface = None if near is None else cap_shift(
                    new[_exposed_caps(session.template)[ball.start]], shift, near,
                    max_shift=float(p["max_surface_shift"]) * radius,
                    max_residual=float(p["max_surface_residual"]) * radius)
                on_scan.append(to_surface is not None)
                if to_surface is not None:
                    new = new + to_surface
            moved += float(np.linalg.norm(new - fitted[ball], axis=1).mean()) / 2
            fitted[ball] = new
        session.vertices = torch.from_numpy(fitted.astype(np.float32)).to(session.device)
        if on_scan and not all(on_scan):
            session.note(f"{on_scan.count(False)} of 2 eyeballs placed from the socket only: "
                         "the scan shows too little eye surface there")
        return {"eyeball_shift": moved, "eyeball_scale": mean_scale}


# The template's exposed caps by a digest of its vertices and faces: a ray test of ~0.05 s an
# eye, the same for every fit with that template (a batch fits many).
_CAPS: dict[bytes, dict[int, np.ndarray]] = {}


def _exposed_caps(template: FlameTemplate) -> dict[int, np.ndarray]:
    """Each eyeball's exposed cap (``eye_surface.exposed_cap``), by the eyeball's first
    vertex index."""
    key = hashlib.blake2b(template.vertices.tobytes() + template.faces.tobytes(),
                          digest_size=16).digest()
    if key not in _CAPS:
        head_faces = template.faces[(template.faces < LEFT_EYEBALL.start).all(1)]
        _CAPS[key] = {ball.start: exposed_cap(template.vertices, ball, head_faces)
                      for ball in (LEFT_EYEBALL, RIGHT_EYEBALL)}
    return _CAPS[key]


def _faces_near(vertices: np.ndarray, faces: np.ndarray, centroids: np.ndarray,
                centre: np.ndarray, radius: float) -> MeshQuery | None:
    """The faces (F,3) whose centroids (F,3) lie within 3 eyeball radii of ``centre``, as a
    query over just those, or None where there are none."""
    near = np.linalg.norm(centroids - centre, axis=1) < 3.0 * radius
    if not near.any():
        return None
    used, local = np.unique(faces[near], return_inverse=True)
    return MeshQuery(vertices[used], local.reshape(-1, 3))


def _affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``dst ~ src @ linear.T + shift`` for (N,3) point sets; (3,3), (3,)."""
    rows = np.c_[src, np.ones(len(src))]
    solution, *_ = np.linalg.lstsq(rows, dst, rcond=None)
    return solution[:3].T, solution[3]
