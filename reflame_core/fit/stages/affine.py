"""Per-axis scale of the template after the rigid alignment (the ``affine`` stage).

A head 15% wider or shorter than FLAME's template is a global change that the Laplacian-
regularised deformation takes many steps (and some distortion) to make; this stage makes it
in a few trimmed ICP iterations against the landmarks and the scan surface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.stages.base import FitStage
from reflame_core.fit.stages.rigid import skull_share
from reflame_core.fit.surface_pairs import surface_pairs
from reflame_core.geometry.axis_scale import (
    axis_scale_from_points,
    plane_rows,
    point_rows,
    solve_axis_scale,
    trimmed,
)
from reflame_core.geometry.similarity import Similarity

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

IDENTITY = np.r_[np.ones(3), np.zeros(3)]


class AffineStage(FitStage):
    """One iteration = one trimmed ICP step of ``x' = rigid(scales * x + offset)``.

    ``x`` is the template (template frame): the scales are along the template's own width,
    height and depth, so they read as head proportions whatever the scan's pose. The rigid
    similarity (``session.rigid``) and the scan -> canonical frame are left as they are.

    State: ``params`` (6,) float64 ``[scales(3), offset(3)]`` (offset in template units).
    """

    name = "affine"

    def __init__(self) -> None:
        super().__init__()
        self.params_: np.ndarray = IDENTITY.copy()

    def begin(self, session: FitSession) -> None:
        # Read the transform back from the vertices, so that a restore (or a restart from
        # the stage's start vertices) continues from where the fit is.
        sim = _rigid(session)
        template = session.template_vertices.cpu().numpy().astype(np.float64)
        current = sim.inverse().apply(session.vertices.detach().cpu().numpy().astype(np.float64))
        self.params_ = axis_scale_from_points(template, current)
        session.ensure_targets(_surface_samples(session))

    def step(self, session: FitSession) -> dict[str, float]:
        p = self.params(session)
        sim = _rigid(session)
        to_template = sim.inverse()
        template = session.template_vertices.cpu().numpy().astype(np.float64)
        moved = self.params_[:3] * template + self.params_[3:]
        blocks = []
        losses: dict[str, float] = {}
        share = skull_share(session)
        surface = self._surface_block(session, p, sim, to_template, template, moved, share)
        lm = self._landmark_block(session, p, to_template, share)
        for key, found in (("surface", surface), ("landmark_3d", lm)):
            if found is None:
                continue
            a, b, w, residual = found
            blocks.append((a, b, w))
            losses[key] = residual
        if not blocks:
            session.note("affine: no landmarks and no scan surface in reach: left as it was")
        else:
            solved = solve_axis_scale(blocks, self.params_)
            change = float(p["max_change"])
            solved[:3] = np.clip(solved[:3], 1.0 - change, 1.0 + change)
            self.params_ = solved
        out = sim.apply(self.params_[:3] * template + self.params_[3:])
        session.vertices = torch.from_numpy(out.astype(np.float32)).to(session.device)
        for axis, scale in zip("xyz", self.params_[:3], strict=True):
            losses[f"scale_{axis}"] = float(scale)
        return losses

    def _surface_block(
        self,
        session: FitSession,
        p: dict,
        sim: Similarity,
        to_template: Similarity,
        template: np.ndarray,
        moved: np.ndarray,
        share: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        """Point-to-plane rows (a, b, weights, mean kept residual in canonical units) from the
        template's vertices (5023,3) at ``moved`` to their closest scan samples; pairs too
        far, facing away or among the worst ``trim`` are left out. Where ``share`` (the
        skull's share of each landmark, ``skull_share``) is given, the skull's share of each
        vertex weighs it too."""
        weights = session.vertex_weights.cpu().numpy().astype(np.float64)
        if share is not None:  # the skull alone: its share of every vertex
            weights = weights * (1.0 - session.jaw_weights)
        use = weights > 0
        if session.targets is None or not use.any():
            return None
        keep, samples, normals, plane = surface_pairs(session, sim.apply(moved), use, p)
        if not keep.any():
            return None
        # Samples and normals into the template frame (the similarity's scale does not
        # change directions).
        dst = to_template.apply(samples[keep])
        nrm = normals[keep] @ sim.rotation
        a, b = plane_rows(template[keep], dst, nrm)
        w = weights[keep] / weights[keep].sum() * float(p["w_surface"])
        return a, b, w, float(plane[keep].mean())

    def _landmark_block(
        self, session: FitSession, p: dict, to_template: Similarity, share: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        """Point-to-point rows from the template's landmarks to the targets, worst trimmed,
        weighted by ``share`` (the skull's share of each) where given."""
        lm = session.landmark_targets
        if lm is None or float(p["w_landmarks"]) == 0.0:
            return None
        weights = session.landmark_weight_3d.cpu().numpy().astype(np.float64)
        if share is not None:
            weights = weights * share
        keep = weights > 0
        if not keep.any():
            return None
        embed = session.embedding_points(session.template_vertices).cpu().numpy()
        src = embed.astype(np.float64)[lm.indices]
        dst = to_template.apply(lm.points.astype(np.float64))
        pred = self.params_[:3] * src + self.params_[3:]
        residual = np.linalg.norm(pred - dst, axis=1)
        keep = trimmed(residual, keep, float(p["trim"]))
        a, b = point_rows(src[keep], dst[keep])
        w = weights[keep] / weights[keep].sum() * float(p["w_landmarks"])
        # Residuals are in template units; report them in canonical units like the others.
        scale = 1.0 / to_template.scale
        return a, b, np.repeat(w, 3), float(residual[keep].mean() * scale)

    def save_state(self) -> np.ndarray:
        return self.params_.copy()

    def load_state(self, state: np.ndarray | None) -> None:
        if state is not None:
            self.params_ = state.copy()

    def reset(self) -> None:
        super().reset()
        self.params_ = IDENTITY.copy()

    @property
    def scales(self) -> np.ndarray:
        """(3,) scales along the template's x (width), y (height), z (depth)."""
        return self.params_[:3].copy()


def _rigid(session: FitSession) -> Similarity:
    return session.rigid if session.rigid is not None else Similarity.identity()


def _surface_samples(session: FitSession) -> int:
    # The coarse stage's count: the scan renders and samples are built once and shared.
    return int(session.config.stage("coarse")["surface_samples"])
