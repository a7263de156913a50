"""FLAME's jaw turned to the scan's (the ``jaw`` stage), after the per-axis scale.

A scan with its mouth open has its chin and lower lip 5-10% of head height from where the
closed template puts them. Left to the deformation, those landmarks look like outliers to the
robust kernel, the shape prior holds the lips together, and the fit ends with the mouth half
shut. Turning the jaw first, as FLAME's own jaw pose would, leaves the deformation the small
remainder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.jaw import jaw_joint, turn_jaw
from reflame_core.fit.stages.base import FitStage
from reflame_core.geometry.axis_scale import trimmed
from reflame_core.geometry.similarity import Similarity

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

# Landmarks the jaw carries at least this much take part (lower lip, chin, lower jaw line).
CARRIED = 0.5
# Angles searched, degrees apart.
GRID_STEP = 0.25


class JawStage(FitStage):
    """One iteration: the jaw turn in ``min_deg..max_deg`` and shift (up to ``max_shift`` of
    head height: a jaw also slides forward or sideways, and the scan's hinge is not exactly
    where the template's is) that put FLAME's landmarks the jaw carries nearest their targets.
    The turn is a grid search, the shift a weighted least squares for each turn; the worst
    ``trim`` of the landmarks are left out, the rest weighted as the rigid stage weighs them.
    Applied to the template, each vertex by its jaw weight, where the turn is at least
    ``min_turn`` degrees and brings those landmarks ``min_gain`` closer. Only where the
    landmarks show the lips apart (``FitSession.mouth_open``): on a closed mouth the turn
    would only chase the detector's noise on the chin.

    State: ``degrees``, the turn applied (0: left as it was).
    """

    name = "jaw"

    def __init__(self) -> None:
        super().__init__()
        self.degrees = 0.0

    def unavailable(self, session: FitSession) -> str | None:
        if session.landmark_targets is None:
            return "no landmarks: the jaw is turned to the lip and chin landmarks"
        return None

    def begin(self, session: FitSession) -> None:
        self.degrees = 0.0

    def step(self, session: FitSession) -> dict[str, float]:
        p = self.params(session)
        lm = session.landmark_targets
        sim = session.rigid if session.rigid is not None else Similarity.identity()
        to_template = sim.inverse()
        # The template as rigid and affine left it, in the template's own frame (its x axis
        # is the jaw's hinge whatever the scan's pose).
        v = to_template.apply(session.vertices.detach().cpu().numpy().astype(np.float64))
        lmk = session.embedding.points(v, session.template.faces)
        weight = session.landmark_weight_3d.cpu().numpy().astype(np.float64)
        if not session.mouth_open():
            # The landmarks' residual as the stages before left it, for the loss plots.
            use = weight > 0
            d = np.linalg.norm(lmk[lm.indices[use]] - to_template.apply(lm.points[use]), axis=1)
            session.note("jaw: the lips touch: left closed")
            return {"jaw_deg": 0.0, "landmark_3d": float(d.mean() / to_template.scale)
                    if len(d) else 0.0}
        carried = session.landmark_jaw_weights()
        use = (carried >= CARRIED) & (weight > 0)
        if use.sum() < 3:
            session.note("jaw: fewer than 3 lip or chin landmarks: left as it was")
            return {"jaw_deg": 0.0}
        idx = lm.indices[use]
        target = to_template.apply(lm.points[use].astype(np.float64))

        height = float(np.ptp(v[:, 1]))
        joint = jaw_joint(lmk, height)
        c = weight[use]
        w = carried[use]
        max_shift = float(p["max_shift"]) * height

        def solve(degrees: float) -> tuple[float, np.ndarray]:
            """Trimmed weighted mean distance after the turn and its best shift (3,)."""
            turned = turn_jaw(lmk[idx], w, joint, degrees)
            keep = np.ones(len(idx), bool)
            for _ in range(2):  # shift from all, then from the kept ones
                k = c * keep
                shift = ((k * w)[:, None] * (target - turned)).sum(0) / max((k * w * w).sum(),
                                                                           1e-12)
                norm = np.linalg.norm(shift)
                if norm > max_shift:
                    shift *= max_shift / norm
                d = np.linalg.norm(turned + w[:, None] * shift - target, axis=1)
                keep = trimmed(d, np.ones(len(d), bool), float(p["trim"]))
            return float((d[keep] * c[keep]).sum() / c[keep].sum()), shift

        grid = np.union1d(np.arange(float(p["min_deg"]), float(p["max_deg"]) + 1e-9, GRID_STEP),
                          [0.0])
        costs = np.array([solve(a)[0] for a in grid])
        best = float(grid[int(np.argmin(costs))])
        after, shift = solve(best)
        d0 = np.linalg.norm(lmk[idx] - target, axis=1)
        keep0 = trimmed(d0, np.ones(len(d0), bool), float(p["trim"]))
        before = float((d0[keep0] * c[keep0]).sum() / c[keep0].sum())
        scale = 1.0 / to_template.scale / session.head_height  # template units -> head height
        if abs(best) >= float(p["min_turn"]) and after <= (1 - float(p["min_gain"])) * before:
            self.degrees = best
            w_all = session.jaw_weights
            turned = turn_jaw(v, w_all, joint, best) + w_all[:, None] * shift
            session.vertices = torch.from_numpy(sim.apply(turned).astype(np.float32)).to(
                session.device)
            session.note(f"jaw: turned {best:+.1f}° ({'open' if best > 0 else 'closed'}), "
                         f"shifted {100 * np.linalg.norm(shift) / height:.1f}% of head height: "
                         f"lip and chin landmarks {100 * before * scale:.1f}% -> "
                         f"{100 * after * scale:.1f}%")
        else:
            session.note(f"jaw: left as it was (best turn {best:+.1f}°, lip and chin landmarks "
                         f"{100 * before * scale:.1f}% -> {100 * after * scale:.1f}%)")
        return {"jaw_deg": self.degrees, "landmark_3d": (after if self.degrees else before)
                / to_template.scale}

    def save_state(self) -> float:
        return self.degrees

    def load_state(self, state: float | None) -> None:
        if state is not None:
            self.degrees = state

    def reset(self) -> None:
        super().reset()
        self.degrees = 0.0
