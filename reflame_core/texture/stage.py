"""The fitting engine's "texture" stage: projection bake, then optional refinement steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reflame_core.fit.stages.base import FitStage
from reflame_core.texture.bake import bake_texture
from reflame_core.texture.refine import TextureRefiner

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession


class TextureStage(FitStage):
    """Iteration 0 bakes the scan's texture at ``resolution``; the next ``refine_steps``
    iterations each run one ``TextureRefiner.step`` in the enabled views. Writes
    ``session.texture`` ((R,R,3) uint8, row 0 = top) after every iteration.

    Config (``stages.texture``): enabled, resolution, refine_steps, lr, tv_weight, method.
    """

    name = "texture"

    def __init__(self) -> None:
        super().__init__()
        self._refiner: TextureRefiner | None = None

    def enabled(self, session: FitSession) -> bool:
        return super().enabled(session) and session.scan_canonical.has_texture

    def num_steps(self, session: FitSession) -> int:
        return 1 + int(self.params(session).get("refine_steps", 0))

    def begin(self, session: FitSession) -> None:
        self._refiner = None

    def step(self, session: FitSession) -> dict[str, float]:
        p = self.params(session)
        vertices = session.vertices.detach().cpu().numpy()
        if self._refiner is None:
            bake = bake_texture(
                vertices, session.template, session.scan_canonical,
                resolution=int(p.get("resolution", 1024)),
                method=str(p.get("method", "normal_ray")),
            )
            session.texture = bake.texture
            if int(p.get("refine_steps", 0)) > 0:
                self._refiner = TextureRefiner(
                    bake, vertices, session.template, session.scan_canonical, session.renderer,
                    lr=float(p.get("lr", 0.005)), tv_weight=float(p.get("tv_weight", 0.1)),
                )
            return {"valid_fraction": float(bake.valid.mean())}
        losses = self._refiner.step()
        session.texture = self._refiner.result()
        return losses

    def reset(self) -> None:
        super().reset()
        self._refiner = None
