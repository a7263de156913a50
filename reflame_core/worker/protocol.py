"""Messages between the studio (client) and the fitting worker process.

Studio -> worker: ``Command`` (numbered; executed in order, between two iterations).
Worker -> studio: ``Update`` (coalesced: when the studio reads late it gets one update with
the latest vertices and state, every loss record and every result in between).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from reflame_core.fit.landmark_outliers import LandmarkOutlier
from reflame_core.fit.session import StageInfo, StepReport
from reflame_core.geometry.similarity import Similarity

# Commands whose outcome is a value for the studio; the others change the fit's state.
RESULT_COMMANDS = ("detect", "residuals", "export")

# Worker states: "idle" (no session, or one not started), "running", "paused", "finished"
# (every stage ended), "error" (the last command or step raised; the session is as after its
# last good step and accepts commands). The client adds "starting", "stopped" and "crashed".
STATES = ("idle", "running", "paused", "finished", "error")


@dataclass(frozen=True)
class Command:
    seq: int
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """The outcome of a ``RESULT_COMMANDS`` command: ``value``, or ``error`` (one line)."""

    seq: int
    kind: str
    value: Any = None
    error: str | None = None


@dataclass
class SessionDelta:
    """The session's state, with only the loss records the studio has not had yet.

    ``history_start`` is the index (in the session's whole history) of ``new_history[0]``;
    ``texture`` is sent once per new texture (``texture_version``), else None; ``rigid`` is
    the rigid stage's scan alignment (kept so that a restarted worker can go on).
    ``outliers`` (the landmarks the fit contradicts, ``FitSession.landmark_outliers()``) is
    sent only when they changed, else None (unchanged).
    """

    session_id: int
    vertices: np.ndarray  # (5023,3) float32, canonical frame
    stage: str | None
    iteration: int
    stages: list[StageInfo]
    new_history: list[StepReport]
    history_start: int
    events: list[str]
    to_canonical: Similarity
    version: int
    rigid: Similarity | None = None
    texture_version: int = 0
    texture: np.ndarray | None = None
    outliers: list[LandmarkOutlier] | None = None

    def merged(self, newer: SessionDelta) -> SessionDelta:
        """``newer`` with this delta's unsent records (and texture) kept in front."""
        if newer.session_id != self.session_id:
            return newer
        history = newer.new_history
        start = newer.history_start
        if self.history_start + len(self.new_history) == newer.history_start:
            history, start = self.new_history + newer.new_history, self.history_start
        texture = newer.texture
        if texture is None and self.texture_version == newer.texture_version:
            texture = self.texture
        outliers = self.outliers if newer.outliers is None else newer.outliers
        return replace(newer, new_history=history, history_start=start, texture=texture,
                       outliers=outliers)


@dataclass
class Update:
    """Worker -> studio. ``acked``: seq of the last command executed."""

    acked: int
    state: str
    error: str | None = None
    error_trace: str | None = None
    session: SessionDelta | None = None
    results: list[Result] = field(default_factory=list)

    def merged(self, newer: Update) -> Update:
        """One update equivalent to this one followed by ``newer``."""
        session = newer.session
        if self.session is not None and newer.session is not None:
            session = self.session.merged(newer.session)
        return replace(newer, session=session, results=self.results + newer.results)
