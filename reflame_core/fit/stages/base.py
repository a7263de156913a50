"""A fitting stage: one idea of the pipeline, advanced one iteration per ``step``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

STATUSES = ("pending", "running", "done", "skipped")


class FitStage:
    """Base of every stage. Parameters live in the session's config under ``stages.<name>``.

    Subclasses implement ``begin`` (set up state from the session's current vertices),
    ``step`` (one iteration, returns the loss terms) and, when they have live parameters,
    ``param_changed``.
    """

    name: str = ""

    def __init__(self) -> None:
        self.status = "pending"
        self.iteration = 0
        self.start_vertices: torch.Tensor | None = None

    def params(self, session: FitSession) -> dict:
        return session.config.stage(self.name)

    def enabled(self, session: FitSession) -> bool:
        return bool(self.params(session).get("enabled", True))

    def num_steps(self, session: FitSession) -> int:
        return int(self.params(session).get("steps", 1))

    def begin(self, session: FitSession) -> None:
        """Called before the first iteration (and again after a restart)."""

    def step(self, session: FitSession) -> dict[str, float]:
        raise NotImplementedError

    def param_changed(self, session: FitSession, name: str) -> None:
        """A parameter of this stage changed while it runs."""

    def reset(self) -> None:
        self.status = "pending"
        self.iteration = 0
