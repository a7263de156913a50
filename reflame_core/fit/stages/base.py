"""A fitting stage: one idea of the pipeline, advanced one iteration per ``step``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

STATUSES = ("pending", "running", "done", "skipped")
# Why a stage ended: it ran all its steps, its loss stopped falling, or the user skipped it.
END_REASONS = ("step_limit", "converged", "skipped")


class NonFiniteStep(Exception):
    """Raised by ``FitStage.step`` instead of applying a non-finite update.

    The session rolls the step back and skips it (``FitSession.step``). Stages raise it for what
    only they can see (a non-finite gradient); the session itself checks every reported loss
    and the vertices after each step.

    Args:
        term: the loss term to blame ("landmark_3d", "total", ...).
        losses: the step's loss terms as measured.
        what: "loss" or "gradient".
    """

    def __init__(self, term: str, losses: dict[str, float], what: str = "loss") -> None:
        super().__init__(f"non-finite {what} in {term}")
        self.term = term
        self.losses = losses
        self.what = what


class FitStage:
    """Base of every stage. Parameters live in the session's config under ``stages.<name>``.

    Subclasses implement ``begin`` (set up state from the session's current vertices),
    ``step`` (one iteration, returns the loss terms) and, when they have live parameters,
    ``param_changed``. Stages that keep state between iterations (an optimiser) implement
    ``save_state``/``load_state`` so that a failed step can be undone.
    """

    name: str = ""

    def __init__(self) -> None:
        self.status = "pending"
        self.iteration = 0
        self.start_vertices: torch.Tensor | None = None
        self.end_reason: str | None = None  # one of END_REASONS once the stage has ended

    def params(self, session: FitSession) -> dict:
        return session.config.stage(self.name)

    def enabled(self, session: FitSession) -> bool:
        return bool(self.params(session).get("enabled", True))

    def unavailable(self, session: FitSession) -> str | None:
        """Why this stage cannot run on this session although the config enables it, or None.

        The session skips such a stage and says why in an event, instead of dropping it
        silently.
        """
        return None

    def num_steps(self, session: FitSession) -> int:
        """The most iterations the stage runs (it may end earlier, see ``converged``)."""
        return int(self.params(session).get("steps", 1))

    def converged(self, session: FitSession) -> str | None:
        """After an iteration: why the stage may end before its step count (a sentence for
        the event log), or None to go on."""
        return None

    def begin(self, session: FitSession) -> None:
        """Called before the first iteration (and again after a restart or a restore)."""

    def step(self, session: FitSession) -> dict[str, float]:
        raise NotImplementedError

    def save_state(self) -> Any:
        """The state ``step`` changes besides the session's (optimiser, parameters), as a copy.

        Called before every iteration of a running stage; ``load_state`` gets it back when
        the iteration fails or is skipped.
        """
        return None

    def load_state(self, state: Any) -> None:
        """Undo everything since ``save_state`` returned ``state``."""

    def recover(self, session: FitSession) -> str | None:
        """After a non-finite step was undone: adjust so that a retry can succeed.

        Returns what was changed (for the step's event), or None.
        """
        return None

    def param_changed(self, session: FitSession, name: str) -> None:
        """A parameter of this stage changed while it runs."""

    def reset(self) -> None:
        self.status = "pending"
        self.iteration = 0
        self.end_reason = None


def copy_optimizer_state(optimizer) -> dict:
    """A deep copy of ``optimizer.state_dict()`` (its moments are updated in place)."""
    state = optimizer.state_dict()
    return {
        "state": {
            k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in s.items()}
            for k, s in state["state"].items()
        },
        "param_groups": [dict(g) for g in state["param_groups"]],
    }
