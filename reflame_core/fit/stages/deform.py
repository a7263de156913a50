"""Free-form deformation of the template with Large-Steps (coarse and refine stages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reflame_core.fit import losses
from reflame_core.fit.parameterize import (
    AdamUniform,
    from_differential,
    laplacian_system,
    to_differential,
)
from reflame_core.fit.stages.base import FitStage

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

# Loss term -> the stage parameter that weighs it.
WEIGHTS = {
    "landmark_2d": "w_landmark_2d",
    "landmark_3d": "w_landmark_3d",
    "mask": "w_mask",
    "depth": "w_depth",
    "dense": "w_dense",
    "fit_to_scan": "w_fit_to_scan",
    "scan_to_fit": "w_scan_to_fit",
}


class DeformStage(FitStage):
    """Vertices optimised in Large-Steps differential coordinates ``u = (I + lambda L) v``.

    The eyeballs are held still (their rows of ``u`` get no gradient; they are separate
    components, so ``M`` does not couple them to the head); the eyeball stage places them.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.matrix: torch.Tensor | None = None
        self.u: torch.Tensor | None = None
        self.optimizer: AdamUniform | None = None
        self._good: tuple[torch.Tensor, dict] | None = None

    def begin(self, session: FitSession) -> None:
        session.ensure_targets(int(self.params(session)["surface_samples"]))
        self._rebuild(session, session.vertices.detach())

    def _rebuild(self, session: FitSession, vertices: torch.Tensor) -> None:
        p = self.params(session)
        self.matrix = laplacian_system(len(vertices), session.faces, float(p["lambda"]))
        self.u = to_differential(self.matrix, vertices).detach().clone().requires_grad_(True)
        self.optimizer = AdamUniform([self.u], lr=float(p["lr"]))
        self._good = None

    def param_changed(self, session: FitSession, name: str) -> None:
        if self.optimizer is None:
            return
        if name == "lambda":
            self._rebuild(session, session.vertices.detach())
        elif name == "lr":
            for group in self.optimizer.param_groups:
                group["lr"] = float(self.params(session)["lr"])
        elif name == "surface_samples":
            session.ensure_targets(int(self.params(session)["surface_samples"]))

    def vertices(self) -> torch.Tensor:
        return from_differential(self.matrix, self.u, "Cholesky")

    def step(self, session: FitSession) -> dict[str, float]:
        p = self.params(session)
        self._good = (self.u.detach().clone(), _copy_state(self.optimizer))
        self.optimizer.zero_grad()
        verts = self.vertices()
        terms = evaluate_terms(session, verts, p)
        total = sum(float(p[WEIGHTS[k]]) * v for k, v in terms.items())
        report = {k: float(v.detach()) for k, v in terms.items()}
        report["total"] = float(total.detach()) if torch.is_tensor(total) else float(total)
        if not torch.isfinite(torch.as_tensor(report["total"])):
            self._roll_back(session, "loss")
            return report
        if torch.is_tensor(total) and total.requires_grad:
            total.backward()
            self.u.grad[session.eyeball_mask] = 0.0
            self.optimizer.step()
        with torch.no_grad():
            new = self.vertices()
        if not torch.isfinite(new).all():
            self._roll_back(session, "vertices")
            return report
        session.vertices = new
        return report

    def _roll_back(self, session: FitSession, what: str) -> None:
        u, state = self._good
        with torch.no_grad():
            self.u.copy_(u)
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        lr = self.optimizer.param_groups[0]["lr"]
        self.params(session)["lr"] = lr
        session.note(
            f"{self.name}: non-finite {what} at iteration {self.iteration}; "
            f"rolled back and halved the learning rate to {lr:.3g}"
        )


def _copy_state(optimizer: AdamUniform) -> dict:
    state = optimizer.state_dict()
    return {
        "state": {
            k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in s.items()}
            for k, s in state["state"].items()
        },
        "param_groups": [dict(g) for g in state["param_groups"]],
    }


def evaluate_terms(session: FitSession, verts: torch.Tensor, p: dict) -> dict[str, torch.Tensor]:
    """Every loss term whose weight in ``p`` is non-zero, for fitted vertices (V,3)."""
    on = {k for k, w in WEIGHTS.items() if float(p[w]) != 0.0}
    terms: dict[str, torch.Tensor] = {}
    t = session.targets
    if on & {"mask", "depth", "dense"}:
        out = session.renderer.render(
            verts,
            session.faces,
            attrs={"position": verts, "weight": session.vertex_weights[:, None]},
            views=t.view_ids,
        )
        both = losses.erode(t.covered & (out.tri_id >= 0)[..., None])
        weight = out.attrs["weight"]
        if "mask" in on:
            terms["mask"] = losses.mask_l1(out.mask, t.mask)
        if "depth" in on:
            terms["depth"] = losses.depth_l1(out.depth, t.depth, both, weight)
        if "dense" in on:
            terms["dense"] = session.dense_cue.loss(out, t, both, weight)
    lm = session.landmark_targets
    if lm is not None and on & {"landmark_2d", "landmark_3d"}:
        pred = session.embedding_points(verts)[session.landmark_index]
        if "landmark_3d" in on:
            terms["landmark_3d"] = losses.landmark_3d(
                pred, session.landmark_points, session.landmark_weight_3d
            )
        if "landmark_2d" in on:
            px, _ = session.cameras.project(pred, t.view_ids)
            tgt_px, w = session.landmark_2d
            terms["landmark_2d"] = losses.landmark_2d(px, tgt_px, w, session.cameras.resolution)
    if on & {"fit_to_scan", "scan_to_fit"}:
        normals = losses.vertex_normals_torch(verts.detach(), session.faces)
        f2s, s2f = losses.surface_terms(
            verts,
            normals,
            session.vertex_weights,
            t.samples,
            t.sample_normals,
            max_distance=float(p["max_distance"]),
            min_normal_cos=float(p["min_normal_cos"]),
            sample_tree=t.sample_tree,
        )
        terms["fit_to_scan"], terms["scan_to_fit"] = f2s, s2f
    return terms
