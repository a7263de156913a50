"""A smooth deformation of the whole head before the free-form stages (the ``lattice`` stage).

Heads differ from FLAME's template in shapes that span the head: a longer skull, a jaw set
back, a cheek pushed out. The rigid and affine stages leave those to the Large-Steps
deformation, whose surface terms only hold each vertex to the scan's tangent plane: where
the scan is smooth (the scalp, the neck) the template's vertices then slide into place by
whatever path the optimiser takes. A deformation that is smooth in *space* (a B-spline
lattice around the head, ``geometry/lattice.py``) ties each vertex's motion to that of the
surface around it in every direction: where the side of the head moves out, the scalp above
it moves with it, as the same smooth change of shape would move it. This stage fits such a
deformation to the scan surface and the landmarks by a few ICP iterations, each a linear
least-squares solve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.stages.base import FitStage
from reflame_core.fit.surface_pairs import surface_pairs
from reflame_core.geometry.axis_scale import trimmed
from reflame_core.geometry.lattice import Lattice

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

# Pull of every control displacement toward none, next to the data terms (each weighing 1 in
# all): control points that no data reaches (the box's far corners) stay where they are.
DAMPING = 1e-6


def landmark_pull(confidence: np.ndarray, power: float) -> float:
    """How hard a set of landmarks pulls the lattice, in (0,1]: the mean of their confidences
    (L,) to ``power``. Detected landmarks, whose views agree by 0.3-0.55 and which lie
    0.3-1% of head height off, pull less than exact ones (confidence 1: placed by an
    artist, or a file without confidences): the lattice's few smooth degrees of freedom
    carry a landmark's error over the whole face."""
    if confidence.size == 0:
        return 1.0
    return float(np.mean(np.clip(confidence, 1e-6, 1.0))) ** power


class LatticeStage(FitStage):
    """One iteration = one ICP step of ``x' = x0 + basis(x0) @ c`` against the scan surface
    (point-to-plane) and the 3D landmarks (point-to-point).

    ``x0`` (V,3) are the vertices when the stage begins (canonical frame), the lattice spans
    their bounding box (``control_points`` per axis) and ``c`` (K,3) are the control
    points' displacements. ``smoothness`` weighs the bending of ``c`` (its second
    differences, ``Lattice.bending_rows``) against the data: affine changes cost nothing.
    Landmarks weigh as in the deformation stages (confidence sharpened, an artist's edits
    in full), the worst ``trim`` of them and of the surface pairs left out of each step; all
    together they weigh ``w_landmarks`` times ``landmark_pull`` of their confidences.

    State: ``displacements`` (K,3) float64.
    """

    name = "lattice"

    def __init__(self) -> None:
        super().__init__()
        self.displacements: np.ndarray | None = None
        self._start: torch.Tensor | None = None  # (V,3) float64, where the stage began
        self._basis: torch.Tensor | None = None  # (V,K) float64
        self._bending: torch.Tensor | None = None  # (K,K) bending^T bending / rows

    def begin(self, session: FitSession) -> None:
        p = self.params(session)
        # The lattice deforms the vertices the stage begins from (after a restore: the
        # restored ones, whose own start is not kept), from no displacement.
        start = session.vertices.detach().cpu().numpy().astype(np.float64)
        lattice = Lattice.around(start, int(p["control_points"]))
        bending = lattice.bending_rows()
        # The normal equations are dense products of (V,K) by (V,3K) (a few GFLOP a step):
        # torch's, on the fit's device and its thread count, not numpy's BLAS, which would
        # take every core in each of a batch's fits.
        self._start = torch.from_numpy(start).to(session.device)
        self._basis = torch.from_numpy(lattice.basis(start)).to(session.device)
        self._bending = torch.from_numpy(bending.T @ bending / len(bending)).to(session.device)
        self.displacements = np.zeros((lattice.num_controls, 3))
        session.ensure_targets(int(session.config.stage("coarse")["surface_samples"]))

    def step(self, session: FitSession) -> dict[str, float]:
        p = self.params(session)
        basis = self._basis
        k = basis.shape[1]
        dev = basis.device
        start = self._start
        here = start + basis @ torch.from_numpy(self.displacements).to(dev)
        lhs = torch.zeros((3 * k, 3 * k), dtype=torch.float64, device=dev)
        rhs = torch.zeros(3 * k, dtype=torch.float64, device=dev)
        losses: dict[str, float] = {}

        weights = session.vertex_weights.cpu().numpy().astype(np.float64)
        use = weights > 0
        if session.targets is not None and use.any():
            keep, samples, normals, plane = surface_pairs(session, here.cpu().numpy(), use, p)
            if keep.any():
                # normal . (start + basis @ c) = normal . sample, one row per pair.
                rows = torch.from_numpy(np.flatnonzero(keep)).to(dev)
                n = torch.from_numpy(normals[keep]).to(dev)
                a = torch.cat([basis[rows] * n[:, axis:axis + 1] for axis in range(3)], dim=1)
                b = ((torch.from_numpy(samples[keep]).to(dev) - start[rows]) * n).sum(1)
                w = torch.from_numpy(weights[keep] / weights[keep].sum()
                                     * float(p["w_surface"])).to(dev)
                lhs += (a * w[:, None]).T @ a
                rhs += (a * w[:, None]).T @ b
                losses["surface"] = float(plane[keep].mean())

        lm = session.landmark_targets
        if lm is not None and float(p["w_landmarks"]) > 0.0:
            lw = session.landmark_weight_deform.cpu().numpy().astype(np.float64)
            # Each landmark's control weights (L,K), and where it starts: FLAME's landmark
            # embedding is linear in the vertices, so it maps the basis rows too.
            index = torch.as_tensor(lm.indices, device=dev)
            controls = session.embedding_points(basis)[index]
            at_start = session.embedding_points(start)[index]
            target = lm.points.astype(np.float64)
            at = at_start + controls @ torch.from_numpy(self.displacements).to(dev)
            residual = np.linalg.norm(at.cpu().numpy() - target, axis=1)
            keep = trimmed(residual, lw > 0, float(p["trim"]))
            if keep.any():
                rows = torch.from_numpy(np.flatnonzero(keep)).to(dev)
                w = torch.from_numpy(lw[keep] / lw[keep].sum() * float(p["w_landmarks"])
                                     * landmark_pull(lm.confidence[lw > 0],
                                                     float(p["mean_confidence_power"]))).to(dev)
                a = controls[rows]
                gram = (a * w[:, None]).T @ a
                gap = torch.from_numpy(target[keep]).to(dev) - at_start[rows]
                for axis in range(3):
                    block = slice(axis * k, (axis + 1) * k)
                    lhs[block, block] += gram
                    rhs[block] += (a * w[:, None]).T @ gap[:, axis]
                losses["landmark_3d"] = float(residual[keep].mean())

        if not losses:
            session.note("lattice: no landmarks and no scan surface in reach: left as it was")
            return losses
        eye = torch.eye(3, dtype=torch.float64, device=dev)
        regular = (float(p["smoothness"]) * torch.kron(eye, self._bending)
                   + DAMPING * torch.eye(3 * k, dtype=torch.float64, device=dev))
        solved = torch.linalg.solve(lhs + regular, rhs).reshape(3, k).T
        self.displacements = solved.cpu().numpy()
        moved = start + basis @ solved
        session.vertices = moved.to(torch.float32)
        losses["moved"] = float((moved - start).norm(dim=1).mean())
        return losses

    def save_state(self) -> np.ndarray | None:
        return None if self.displacements is None else self.displacements.copy()

    def load_state(self, state: np.ndarray | None) -> None:
        if state is not None:
            self.displacements = state.copy()

    def reset(self) -> None:
        super().reset()
        self.displacements = None
