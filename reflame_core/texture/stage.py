"""The fitting engine's "texture" stage: projection bake, then optional refinement steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reflame_core.fit.stages.base import FitStage, copy_optimizer_state
from reflame_core.texture.bake import bake_texture
from reflame_core.texture.refine import TextureRefiner

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession


class TextureStage(FitStage):
    """Iteration 0 bakes the scan's texture (or its vertex colours) at ``resolution``; the next
    ``refine_steps`` iterations each run one ``TextureRefiner.step`` in the enabled views
    (texture-image scans only). Writes ``session.texture`` ((R,R,3) uint8, row 0 = top) after
    every iteration.

    Config (``stages.texture``): enabled, resolution, refine_steps, lr, tv_weight, method.
    """

    name = "texture"

    def __init__(self) -> None:
        super().__init__()
        self._refiner: TextureRefiner | None = None

    def unavailable(self, session: FitSession) -> str | None:
        scan = session.scan_canonical
        if scan.has_texture or scan.vertex_colors is not None:
            return None
        return "the scan has neither a texture image with UVs nor vertex colours"

    def num_steps(self, session: FitSession) -> int:
        return 1 + self._refine_steps(session)

    def _refine_steps(self, session: FitSession) -> int:
        # The refiner renders the scan's texture image: vertex colours can only be baked.
        if not session.scan_canonical.has_texture:
            return 0
        return int(self.params(session).get("refine_steps", 0))

    def begin(self, session: FitSession) -> None:
        self._refiner = None
        if self._refine_steps(session) < int(self.params(session).get("refine_steps", 0)):
            session.note(
                "texture: the scan has vertex colours but no texture image, so only the bake "
                "runs (refinement renders a texture image)"
            )

    def step(self, session: FitSession) -> dict[str, float]:
        p = self.params(session)
        vertices = session.vertices.detach().cpu().numpy()
        if self._refiner is None:
            on_gpu = session.device == "cuda"
            bake = bake_texture(
                vertices, session.template, session.scan_canonical,
                resolution=int(p.get("resolution", 1024)),
                method=str(p.get("method", "normal_ray")),
                # On a GPU the whole bake runs there, the fitting renderer's backend
                # rasterizing the UV layout; on a CPU the numpy bake is the faster one.
                backend=session.renderer.backend if on_gpu else None,
                device=session.device if on_gpu else None,
            )
            session.texture = bake.texture
            if self._refine_steps(session) > 0:
                self._refiner = TextureRefiner(
                    bake, vertices, session.template, session.scan_canonical, session.renderer,
                    lr=float(p.get("lr", 0.005)), tv_weight=float(p.get("tv_weight", 0.1)),
                )
            return {"valid_fraction": float(bake.valid.mean())}
        losses = self._refiner.step()
        session.texture = self._refiner.result()
        return losses

    def save_state(self) -> tuple | None:
        r = self._refiner
        if r is None:
            return None
        # TextureRefiner has no state accessor; its texture and Adam state are all that
        # one of its steps changes (besides the iteration count).
        return r, r.texture.detach().clone(), copy_optimizer_state(r._optimizer), r.iteration

    def load_state(self, state: tuple | None) -> None:
        if state is None:
            self._refiner = None
            return
        self._refiner, texture, optimizer_state, iteration = state
        with torch.no_grad():
            self._refiner.texture.copy_(texture)
        self._refiner.texture.grad = None
        self._refiner._optimizer.load_state_dict(optimizer_state)
        self._refiner.iteration = iteration

    def reset(self) -> None:
        super().reset()
        self._refiner = None
