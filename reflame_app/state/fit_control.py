"""Fitting panel: stage list with progress, run commands, live stage-parameter edits.

The GUI never runs a fitting step itself: every command goes to the fitting worker
(its own process), and everything shown comes from its latest snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reflame_app.state.params import format_value, parse_like


@dataclass
class StageRow:
    name: str
    status: str
    iteration: int
    num_steps: int
    end_reason: str | None = None  # why a finished stage ended ("converged", ...)

    @property
    def progress(self) -> float:
        """0..1 (a stage without a step count is done or not; a converged one is full)."""
        if self.status == "done":
            return 1.0
        if self.num_steps > 0:
            return min(1.0, self.iteration / self.num_steps)
        return 1.0 if self.status == "done" else 0.0


@dataclass
class FitControlState:
    """Commands and parameter edits for the fitting worker (``FitWorker``).

    ``params`` mirrors the stage tables of the session's config as last sent, so text fields
    show what the engine uses; an edit is parsed to the parameter's type before it is sent.
    """

    controller: Any = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    text: dict[tuple[str, str], str] = field(default_factory=dict)
    param_error: dict[tuple[str, str], str] = field(default_factory=dict)
    step_n: int = 10
    sent: list[tuple[str, str, Any]] = field(default_factory=list)

    def attach(self, controller: Any, stage_params: dict[str, dict[str, Any]]) -> None:
        self.controller = controller
        self.params = {s: dict(p) for s, p in stage_params.items()}
        self.text = {(s, k): format_value(v) for s, p in self.params.items() for k, v in p.items()}
        self.param_error.clear()

    @property
    def state(self) -> str:
        """The controller's state, shown as "finished" once every stage is done or skipped
        (also when the controller itself still says "paused"/"idle" then)."""
        if self.controller is None:
            return "no fit"
        st = str(self.controller.state)
        if st in ("idle", "paused") and all_stages_done(self._stages()):
            return "finished"
        return st

    def _stages(self) -> Any:
        snap = self.controller.latest_snapshot() if self.controller is not None else None
        return getattr(snap, "stages", None) if snap is not None else None

    def can(self, action: str) -> bool:
        """Whether a button makes sense in the current controller state."""
        st = self.state
        if st in ("no fit", "stopped"):
            return False
        if st == "finished":  # only going back into a stage makes sense
            return action == "restart"
        return {
            "start": st == "idle",
            "pause": st == "running",
            "resume": st == "paused",
            "step": st in ("idle", "paused"),
            "skip": st in ("idle", "running", "paused"),
            "restart": st in ("idle", "running", "paused", "error"),
        }.get(action, False)

    def command(self, action: str, n: int | None = None) -> None:
        c = self.controller
        if c is None:
            raise RuntimeError("no fit session: open a scan and detect landmarks first")
        if action == "start":
            c.start()
        elif action == "pause":
            c.pause()
        elif action == "resume":
            c.resume()
        elif action == "step":
            c.step(int(n if n is not None else self.step_n))
        elif action == "skip":
            c.skip_stage()
        elif action == "restart":
            c.restart_stage()
        else:
            raise ValueError(f"unknown fit command {action!r}")

    def edit_param(self, stage: str, name: str, text: str) -> bool:
        """Parse and send one edited parameter; on a bad value keep the text and say why."""
        key = (stage, name)
        self.text[key] = text
        try:
            value = parse_like(text, self.params[stage][name])
        except ValueError as exc:
            self.param_error[key] = str(exc)
            return False
        self.param_error.pop(key, None)
        if value == self.params[stage][name]:
            return True
        if self.controller is not None:
            self.controller.set_param(stage, name, value)
        self.params[stage][name] = value
        self.sent.append((stage, name, value))
        return True

    def overrides(self) -> dict[str, Any]:
        """Every parameter the user changed, as dotted config overrides (for the session file)."""
        return {f"stages.{s}.{k}": v for s, k, v in self.sent}


DONE_STATUSES = ("done", "skipped", "finished")


def stage_rows(stages: Any, fit_state: str | None = None) -> list[StageRow]:
    """StageRows from a snapshot's stage list (objects or dicts with name, status,
    iteration, num_steps). With ``fit_state`` "paused" (or "idle"), the stage the engine
    calls "running" is shown as "paused": nothing runs while the fit is paused."""
    rows = []
    for st in stages or []:
        get = st.get if isinstance(st, dict) else lambda k, d=None, st=st: getattr(st, k, d)
        status = str(get("status", ""))
        if status == "running" and fit_state in ("paused", "idle", "stopped", "error"):
            status = "paused" if fit_state in ("paused", "idle") else fit_state
        rows.append(StageRow(str(get("name")), status,
                             int(get("iteration", 0) or 0), int(get("num_steps", 0) or 0),
                             get("end_reason")))
    return rows


def all_stages_done(stages: Any) -> bool:
    """Every stage of a snapshot's stage list is done or skipped (False for none)."""
    rows = stage_rows(stages)
    return bool(rows) and all(r.status in DONE_STATUSES for r in rows)
