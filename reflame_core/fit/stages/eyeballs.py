"""Place FLAME's two eyeball spheres in the fitted eye sockets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.regions import LEFT_EYEBALL, RIGHT_EYEBALL
from reflame_core.fit.stages.base import FitStage

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

# iBUG eye contours: 36-41 is the subject's right eye (FLAME's -x eyeball), 42-47 the left.
RIGHT_EYE_LANDMARKS = slice(36, 42)
LEFT_EYE_LANDMARKS = slice(42, 48)


class EyeballStage(FitStage):
    """One iteration: both eyeballs keep the template's offset from their eye's landmarks.

    The template's offset (eyeball centre minus eye-contour centroid) and radius are carried
    over, rotated by the rigid alignment and scaled by the change of the inter-ocular distance,
    one scale for both eyes so they stay the same size.
    """

    name = "eyeballs"

    def num_steps(self, session: FitSession) -> int:
        return 1

    def step(self, session: FitSession) -> dict[str, float]:
        tmpl = session.template_vertices.cpu().numpy().astype(np.float64)
        fitted = session.vertices.detach().cpu().numpy().astype(np.float64)
        lm0 = session.embedding_points(session.template_vertices).cpu().numpy()
        lm1 = session.embedding_points(session.vertices.detach()).cpu().numpy()
        eyes = ((LEFT_EYEBALL, LEFT_EYE_LANDMARKS), (RIGHT_EYEBALL, RIGHT_EYE_LANDMARKS))
        e0 = [lm0[lms].mean(0) for _, lms in eyes]
        e1 = [lm1[lms].mean(0) for _, lms in eyes]
        scale = float(np.linalg.norm(e1[0] - e1[1]) / np.linalg.norm(e0[0] - e0[1]))
        rot = session.rigid.rotation if session.rigid is not None else np.eye(3)
        moved = 0.0
        for (ball, _), a, b in zip(eyes, e0, e1, strict=True):
            centre0 = tmpl[ball].mean(0)
            centre1 = b + scale * rot @ (centre0 - a)
            new = centre1 + scale * (tmpl[ball] - centre0) @ rot.T
            moved += float(np.linalg.norm(new - fitted[ball], axis=1).mean()) / 2
            fitted[ball] = new
        session.vertices = torch.from_numpy(fitted.astype(np.float32)).to(session.device)
        return {"eyeball_shift": moved, "eyeball_scale": scale}
