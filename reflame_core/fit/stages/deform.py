"""Free-form deformation of the template with Large-Steps (coarse and refine stages)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch.profiler import record_function

from reflame_core.fit import losses
from reflame_core.fit.landmark_outliers import landmark_factors
from reflame_core.fit.parameterize import (
    AdamUniform,
    LaplacianSolve,
    laplacian_system,
    to_differential,
)
from reflame_core.fit.shape_prior import ShapePrior, unsupported
from reflame_core.fit.stages.base import FitStage, NonFiniteStep, copy_optimizer_state

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
    "shape_stretch": "w_shape_stretch",
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
        self.solver: LaplacianSolve | None = None
        self.u: torch.Tensor | None = None
        self._solved: torch.Tensor | None = None  # M^-1 u for the current u, once known
        self.optimizer: AdamUniform | None = None
        self.prior: ShapePrior | None = None
        self.unsupported: torch.Tensor | None = None  # (V,) bool, see _build_prior
        self.built_lambda = 0.0
        self.totals: list[float] = []  # total loss of every iteration so far (convergence)

    def begin(self, session: FitSession) -> None:
        session.ensure_targets(int(self.params(session)["surface_samples"]))
        self._build_prior(session)
        self._rebuild(session, session.vertices.detach())
        self.totals = []

    def _build_prior(self, session: FitSession) -> None:
        reference = shape_reference(session)
        p = self.params(session)
        # Vertices the scan has no surface near when the deformation begins (cut away, a hole,
        # the back of a front-only scan): they hold their shape harder, and the silhouette
        # term does not pull them in where the scan's outline ends.
        self.unsupported = unsupported(reference, session.targets.samples,
                                       float(p["shape_support_distance"]))
        weights = 1.0 + float(p["shape_unsupported_gain"]) * self.unsupported.float()
        self.prior = ShapePrior(reference, session.faces, ~session.eyeball_mask, weights)

    def _rebuild(self, session: FitSession, vertices: torch.Tensor) -> None:
        p = self.params(session)
        self.built_lambda = self._lambda_now(session)
        self.matrix = laplacian_system(len(vertices), session.faces, self.built_lambda)
        self.solver = LaplacianSolve(self.matrix)
        self.u = to_differential(self.matrix, vertices).detach().clone().requires_grad_(True)
        self._solved = None
        self.optimizer = AdamUniform([self.u], lr=float(p["lr"]))

    def param_changed(self, session: FitSession, name: str) -> None:
        if self.optimizer is None:
            return
        if name in ("lambda", "lambda_end", "lambda_phases", "lambda_steps"):
            self._rebuild(session, session.vertices.detach())
        elif name == "lr":
            self._set_lr(float(self.params(session)["lr"]))
        elif name == "surface_samples":
            session.ensure_targets(int(self.params(session)["surface_samples"]))
        elif name in ("shape_support_distance", "shape_unsupported_gain"):
            self._build_prior(session)

    def _lambda_now(self, session: FitSession) -> float:
        """Large-Steps lambda for this iteration: ``lambda`` annealed geometrically down to
        ``lambda_end`` in ``lambda_phases`` equal phases over the first ``lambda_steps``
        iterations (coarse to fine: early steps move the head in large smooth pieces, later
        ones in small), then ``lambda_end``."""
        p = self.params(session)
        start, end = float(p["lambda"]), float(p["lambda_end"])
        phases = int(p["lambda_phases"])
        if phases <= 1 or end == start:
            return start
        horizon = max(1, min(int(p["lambda_steps"]), self.num_steps(session)))
        phase = min(phases - 1, self.iteration * phases // horizon)
        return start * (end / start) ** (phase / (phases - 1))

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def vertices(self) -> torch.Tensor:
        """(V,3) vertices of the current ``u``, differentiable in ``u``."""
        return self.solver(self.u, self._solved)

    def step(self, session: FitSession) -> dict[str, float]:
        """One Adam step on ``u``; raises ``NonFiniteStep`` before any non-finite update.

        The host waits for the device once per step: every loss term, the total and whether
        the gradient is finite come back in one copy, after the backward pass.
        """
        p = self.params(session)
        if self._lambda_now(session) != self.built_lambda:
            self._rebuild(session, session.vertices.detach())
        self.optimizer.zero_grad()
        with record_function("solve"):
            verts = self.vertices()
        terms = {**evaluate_terms(session, verts, p, self.unsupported),
                 **shape_terms(self.prior, verts, p)}
        weights = term_weights(session, p)
        total = sum(weights[k] * v for k, v in terms.items())
        if not torch.is_tensor(total) or not total.requires_grad:
            report = {k: float(v.detach()) for k, v in terms.items()}
            report["total"] = float(total.detach()) if torch.is_tensor(total) else float(total)
            return report  # no term is on: nothing to optimise
        with record_function("backward"):
            total.backward()
        grad = self.u.grad
        grad.masked_fill_(session.eyeball_mask[:, None], 0.0)
        with record_function("readback"):
            values = torch.stack(
                [*(v.detach().float() for v in terms.values()), total.detach().float(),
                 torch.isfinite(grad).all().float()]
            ).tolist()
        report = dict(zip([*terms, "total"], values[:-1], strict=True))
        if not math.isfinite(report["total"]):
            bad = [k for k, v in report.items() if not math.isfinite(v)]
            raise NonFiniteStep(bad[0], report)
        if values[-1] != 1.0:
            # Adam would carry a NaN in its moments from now on: stop before it steps.
            raise NonFiniteStep(self._blame_gradient(session, p), report, "gradient")
        with record_function("optimizer"):
            self.optimizer.step()
        with torch.no_grad(), record_function("solve"):
            self._solved = None  # u changed; the next step's forward reuses this solve
            self._solved = self.vertices()
            session.vertices = self._solved
        self.totals.append(report["total"])
        return report

    def _blame_gradient(self, session: FitSession, p: dict) -> str:
        """The first term whose own gradient is non-finite (re-evaluated; failures only)."""
        verts = self.vertices()
        terms = {**evaluate_terms(session, verts, p, self.unsupported),
                 **shape_terms(self.prior, verts, p)}
        for name, value in terms.items():
            if not value.requires_grad:
                continue
            (grad,) = torch.autograd.grad(value, self.u, retain_graph=True, allow_unused=True)
            if grad is not None and not torch.isfinite(grad[~session.eyeball_mask]).all():
                return name
        return "total"

    def converged(self, session: FitSession) -> str | None:
        """The loss has plateaued: after ``min_steps``, the mean total loss of the last
        ``plateau_window`` iterations fell less than ``plateau_tolerance`` (relative) below
        the mean of the window before."""
        p = self.params(session)
        window = int(p.get("plateau_window", 0))
        n = len(self.totals)
        if window <= 0 or n < max(int(p.get("min_steps", 0)), 2 * window):
            return None
        last = sum(self.totals[-window:]) / window
        before = sum(self.totals[-2 * window : -window]) / window
        tolerance = float(p.get("plateau_tolerance", 0.0))
        gain = (before - last) / max(abs(before), 1e-12)
        if gain >= tolerance:
            return None
        return (f"converged (the mean loss of the last {window} steps fell {100 * gain:.2f}%, "
                f"under {100 * tolerance:g}%)")

    def save_state(self) -> tuple | None:
        if self.optimizer is None:
            return None
        return (
            self.matrix, self.solver, self.u, self.optimizer, self.u.detach().clone(),
            copy_optimizer_state(self.optimizer), len(self.totals),
            self.built_lambda,
        )

    def load_state(self, state: tuple | None) -> None:
        if state is None:
            return
        self.matrix, self.solver, self.u, self.optimizer, u, optimizer_state, count, \
            self.built_lambda = state
        del self.totals[count:]
        self._solved = None
        with torch.no_grad():
            self.u.copy_(u)
        self.u.grad = None
        self.optimizer.load_state_dict(optimizer_state)

    def recover(self, session: FitSession) -> str:
        """Halve the learning rate (in the config too, so a restart keeps it)."""
        lr = 0.5 * float(self.params(session)["lr"])
        self.params(session)["lr"] = lr
        if self.optimizer is not None:
            self._set_lr(lr)
        return f"halved the learning rate to {lr:.3g}"


def shape_reference(session: FitSession) -> torch.Tensor:
    """(V,3) the template as the deformation found it: where the first deformation stage that
    ran (coarse, else refine) started. The shape priors measure change from it."""
    for name in ("coarse", "refine"):
        start = session.stage(name).start_vertices
        if start is not None:
            return start
    return session.vertices.detach()


def term_weights(session: FitSession, p: dict) -> dict[str, float]:
    """Each loss term's weight in the stage's total: its ``w_*`` in ``p``; the landmark
    terms' multiplied by up to ``certain_landmark_gain``, as far as the landmarks are certain
    (``FitSession.landmark_certainty``).

    The ``w_landmark_*`` are set for detections, a few of which are far off and would drag
    the face along the surface after them. An exact landmark's residual is the fit's own
    error, so exact landmarks may pull harder."""
    weights = {k: float(p[name]) for k, name in WEIGHTS.items()}
    gain = 1.0 + (float(p["certain_landmark_gain"]) - 1.0) * session.landmark_certainty
    for k in ("landmark_2d", "landmark_3d"):
        weights[k] *= gain
    return weights


def shape_terms(prior: ShapePrior | None, verts: torch.Tensor, p: dict) -> dict[str, torch.Tensor]:
    """The shape-prior terms whose weight in ``p`` is non-zero, for fitted vertices (V,3)."""
    terms: dict[str, torch.Tensor] = {}
    if prior is not None and float(p["w_shape_stretch"]) != 0.0:
        terms["shape_stretch"] = prior.stretch(verts)
    return terms


def evaluate_terms(session: FitSession, verts: torch.Tensor, p: dict,
                   unsupported: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every data term (landmarks, renders, surface) whose weight in ``p`` is non-zero, for
    fitted vertices (V,3).

    ``unsupported`` (V,) bool marks vertices the scan has no surface for. Where the fit's
    silhouette is made of them, the scan's outline says nothing about where it should be (the
    scan ends there, the head does not), so the mask term leaves those pixels out.
    """
    on = {k for k, w in WEIGHTS.items() if float(p[w]) != 0.0}
    terms: dict[str, torch.Tensor] = {}
    t = session.targets
    if on & {"mask", "depth", "dense"}:
        with record_function("render"):
            out = session.renderer.render(
                verts,
                session.faces,
                attrs={"position": verts, "weight": session.vertex_weights[:, None],
                       "unsupported": unsupported[:, None].float()},
                views=t.view_ids,
            )
        with record_function("image_losses"):
            both = losses.erode(t.covered & (out.tri_id >= 0)[..., None])
            weight = out.attrs["weight"]
            if "mask" in on:
                # Detached: the fit must not lower the term by sliding unsupported surface
                # over the pixels it gets wrong.
                keep = 1.0 - out.attrs["unsupported"].detach()
                terms["mask"] = losses.mask_l1(out.mask, t.mask, keep)
            if "depth" in on:
                terms["depth"] = losses.depth_l1(out.depth, t.depth, both, weight)
            if "dense" in on:
                terms["dense"] = session.dense_cue.loss(out, t, both, weight)
    if session.landmark_targets is not None and on & {"landmark_2d", "landmark_3d"}:
        with record_function("landmark_terms"):
            terms.update(_landmark_terms(session, verts, on))
    if on & {"fit_to_scan", "scan_to_fit"}:
        with record_function("surface_terms"):
            terms["fit_to_scan"], terms["scan_to_fit"] = _surface_terms(session, verts, p)
    return terms


def _landmark_terms(session: FitSession, verts: torch.Tensor, on: set[str]
                    ) -> dict[str, torch.Tensor]:
    terms = {}
    t = session.targets
    pred = session.embedding_points(verts)[session.landmark_index]
    # IRLS: robust factors from this iteration's 3D residuals. The 2D term takes the same
    # factors: a landmark whose 3D target is wrong projects to a wrong pixel too.
    with record_function("robust_factors"):
        robust = landmark_factors(session, verts)
    if "landmark_3d" in on:
        terms["landmark_3d"] = losses.landmark_3d(
            pred, session.landmark_points, session.landmark_weight_deform * robust
        )
    if "landmark_2d" in on:
        px, _ = session.cameras.project(pred, t.view_ids)
        tgt_px, w = session.landmark_2d
        terms["landmark_2d"] = losses.landmark_2d(
            px, tgt_px, w * robust[None, :], session.cameras.resolution
        )
    return terms


def _surface_terms(session: FitSession, verts: torch.Tensor, p: dict):
    t = session.targets
    normals = losses.vertex_normals_torch(verts.detach(), session.faces)
    return losses.surface_terms(
        verts,
        normals,
        session.vertex_weights,
        t.samples,
        t.sample_normals,
        max_distance=float(p["max_distance"]),
        min_normal_cos=float(p["min_normal_cos"]),
        sample_tree=t.sample_tree,
    )
