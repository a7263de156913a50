"""``FitRunner``: executes the studio's commands on one ``FitSession`` and steps it.

It is the worker process's whole state and logic, written without any process or pipe so
that tests drive it directly. One ``tick()`` is one iteration of the current stage.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reflame_core.assets.flame import FlameTemplate, LandmarkEmbedding
from reflame_core.fit.config import FitConfig
from reflame_core.fit.landmark_outliers import LandmarkOutlier
from reflame_core.fit.session import FitSession, FitSnapshot
from reflame_core.fit.setup import FitInputs, make_session
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan
from reflame_core.landmarks.detector import LandmarkDetector
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.render.cameras import OrbitCameras
from reflame_core.worker.protocol import RESULT_COMMANDS, Command, Result, SessionDelta, Update

if TYPE_CHECKING:
    from reflame_core.landmarks.orient import FoundFrame


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (the banner shows it; the traceback goes to the log)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FitRunner:
    """The worker's state: FLAME assets, the scan, one session and how far to run it.

    ``state`` is one of ``protocol.STATES``. Commands are methods named ``cmd_<name>``;
    ``handle`` dispatches a ``Command`` to one and records its outcome.
    """

    def __init__(self, device: str = "cpu", render_backend: str = "auto") -> None:
        self.device = device
        self.render_backend = render_backend
        self.template: FlameTemplate | None = None
        self.embedding: LandmarkEmbedding | None = None
        self.scan: Scan | None = None
        self.session: FitSession | None = None
        self.session_id = 0
        self.state = "idle"
        self.error: str | None = None
        self.error_trace: str | None = None
        self.acked = 0
        self.quit = False
        self._steps_left: int | None = None  # None: run until paused or finished
        self._results: list[Result] = []
        self._history_sent = 0
        self._texture_sent: int | None = None
        self._texture_version = 0
        self._outliers_key: tuple[int, int] | None = None  # (version, id of the targets)
        self._outliers_sent: list[LandmarkOutlier] | None = None
        self._detectors: dict[str, LandmarkDetector] = {}  # built once: model loads take s

    # ---- dispatch ------------------------------------------------------------------------
    def handle(self, command: Command) -> None:
        """Run one command. A failing result command reports its error in its ``Result``;
        any other failing command puts the runner in "error" (the session is unchanged)."""
        method = getattr(self, f"cmd_{command.name}", None)
        try:
            if method is None:
                raise ValueError(f"unknown worker command {command.name!r}")
            value = method(**command.args)
            if command.name in RESULT_COMMANDS:
                self._results.append(Result(command.seq, command.name, value=value))
        except Exception as exc:  # noqa: BLE001 - reported to the studio; the worker lives on
            if command.name in RESULT_COMMANDS:
                self._results.append(Result(command.seq, command.name, error=one_line(exc)))
            else:
                self._fail(exc)
        self.acked = command.seq
        self._settle()

    @property
    def wants_step(self) -> bool:
        return self.state == "running" and self.session is not None and not self.session.done

    def tick(self) -> None:
        """One iteration of the current stage (when running)."""
        if not self.wants_step:
            return
        try:
            self.session.step()
        except Exception as exc:  # noqa: BLE001 - the session stays as after its last good step
            self._fail(exc)
            return
        if self._steps_left is not None:
            self._steps_left -= 1
            if self._steps_left <= 0:
                self.state = "paused"
        self._settle()

    def _fail(self, exc: BaseException) -> None:
        self.error = one_line(exc)
        self.error_trace = traceback.format_exc()
        self.state = "error"

    def _settle(self) -> None:
        """Finished exactly when a session has run every stage."""
        if self.session is None:
            return
        if self.session.done and self.state != "error":
            self.state = "finished"
        elif self.state == "finished":
            self.state = "paused"

    def _need_session(self) -> FitSession:
        if self.session is None:
            raise RuntimeError("no fit session: start one first")
        return self.session

    def _need_scan(self) -> Scan:
        if self.scan is None:
            raise RuntimeError("no scan: open one first")
        return self.scan

    # ---- inputs --------------------------------------------------------------------------
    def cmd_set_assets(self, template: FlameTemplate, embedding: LandmarkEmbedding) -> None:
        self.template, self.embedding = template, embedding

    def cmd_open_scan(self, scan: Scan) -> None:
        """A new scan ends the session of the old one."""
        self.scan = scan
        self.session = None
        self.state = "idle"
        self.error = self.error_trace = None

    def cmd_new_session(self, config: FitConfig, landmarks: LandmarkTargets | None,
                        restore: FitSnapshot | None = None, seed: int = 0,
                        to_canonical: Similarity | None = None) -> None:
        """A fresh ``FitSession``; with ``restore`` (the last snapshot of a worker that
        died) it continues from there, paused. ``to_canonical``: the studio's frame (None:
        the config's axes)."""
        if self.template is None or self.embedding is None:
            raise RuntimeError("no FLAME assets: set the FLAME folder first")
        scan = self._need_scan()
        self.session = None  # free the old session's memory before building the new one
        inputs = FitInputs(scan, self.template, self.embedding, landmarks, to_canonical)
        self.session = make_session(inputs, config, device=self.device, seed=seed,
                                    render_backend=self.render_backend, restore=restore)
        self.session_id += 1
        self._history_sent = 0
        self._texture_sent = None
        self._outliers_key = self._outliers_sent = None
        self.error = self.error_trace = None
        self.state = "paused" if restore is not None else "idle"
        self._steps_left = None

    # ---- running -------------------------------------------------------------------------
    def cmd_start(self) -> None:
        self._go(None)

    def cmd_resume(self) -> None:
        self._go(None)

    def cmd_pause(self) -> None:
        self._go(0)

    def cmd_step(self, n: int = 1) -> None:
        self._go(max(1, int(n)))

    def _go(self, steps: int | None) -> None:
        self._need_session()
        self._steps_left = steps
        self.state = "paused" if steps == 0 else "running"
        self.error = self.error_trace = None

    def cmd_skip_stage(self) -> None:
        self._need_session().skip_stage()

    def cmd_restart_stage(self) -> None:
        self._need_session().restart_stage()

    def cmd_goto_stage(self, name: str) -> None:
        self._need_session().goto_stage(name)

    def cmd_set_param(self, stage: str, name: str, value: Any) -> None:
        self._need_session().set_param(stage, name, value)

    def cmd_set_landmarks(self, landmarks: LandmarkTargets | None) -> None:
        self._need_session().set_landmarks(landmarks)

    def cmd_set_cameras(self, cameras: OrbitCameras) -> None:
        self._need_session().set_cameras(cameras)

    def cmd_quit(self) -> None:
        self.quit = True
        self.state = "paused" if self.state == "running" else self.state

    # ---- result commands ------------------------------------------------------------------
    def cmd_warm_up(self, backend: str = "auto") -> None:
        """Load the landmark detector now, while the user looks at the scan, so that the
        first detection does not wait for it. A detector that cannot load is not an error
        here: detection reports it when asked for."""
        with contextlib.suppress(Exception):  # cmd_detect says why, when the user asks
            self._detector(backend)

    def _detector(self, backend: str) -> LandmarkDetector:
        from reflame_core.landmarks.detector import get_detector

        if backend not in self._detectors:
            self._detectors[backend] = get_detector(backend)
        return self._detectors[backend]

    def cmd_detect(self, to_canonical: Similarity | None = None, backend: str = "auto",
                   refine: bool = False) -> LandmarkSet:
        """Landmarks detected on the open scan; with ``refine`` (and FLAME set), the 68 then
        placed where a quick FLAME fit puts them (``fit.landmark_refine``)."""
        from reflame_core.landmarks.detect import detect_landmarks

        scan = self._need_scan()
        if refine and (self.template is None or self.embedding is None):
            raise RuntimeError("placing landmarks by a fit needs FLAME: set the FLAME folder")
        lms = detect_landmarks(scan, device=self.device, backend=self._detector(backend),
                               to_canonical=to_canonical)
        if not refine:
            return lms
        from reflame_core.fit.landmark_refine import landmarks_from_fit
        from reflame_core.fit.setup import FlameAssets

        return landmarks_from_fit(scan, lms, FlameAssets(self.template, self.embedding),
                                  to_canonical=to_canonical, device=self.device)

    def cmd_find_frame(self, backend: str = "auto") -> FoundFrame:
        """The scan's frame found from its face (``landmarks.orient.find_frame``)."""
        from reflame_core.landmarks.orient import find_frame

        return find_frame(self._need_scan(), self._detector(backend), device=self.device)

    def cmd_residuals(self, views: list[int]) -> dict[str, np.ndarray]:
        return self._need_session().residual_images(list(views))

    def cmd_export(self, out_dir: str | Path, scan_landmarks: LandmarkSet | None = None
                   ) -> dict:
        """Write the fit (``write_fit_outputs``) and the scan's landmarks as edited."""
        from reflame_core.fit.outputs import write_fit_outputs
        from reflame_core.landmarks.landmark_json import save_landmarks

        session = self._need_session()
        out = Path(out_dir).expanduser()
        report = write_fit_outputs(session, out)
        if scan_landmarks is not None:
            save_landmarks(out / "scan_landmarks.json", scan_landmarks, session.scan.vertices,
                           session.scan.faces)
        return report

    # ---- read-out ------------------------------------------------------------------------
    def update(self) -> Update:
        """Everything new for the studio since the last ``update()``."""
        results, self._results = self._results, []
        return Update(acked=self.acked, state=self.state, error=self.error,
                      error_trace=self.error_trace, session=self._session_delta(),
                      results=results)

    def _session_delta(self) -> SessionDelta | None:
        s = self.session
        if s is None:
            return None
        start, self._history_sent = self._history_sent, len(s.history)
        snap = s.snapshot(history_since=start)
        texture = None
        if s.texture is not None and id(s.texture) != self._texture_sent:
            self._texture_sent = id(s.texture)
            self._texture_version += 1
            texture = s.texture
        return SessionDelta(
            session_id=self.session_id,
            vertices=snap.vertices,
            stage=snap.stage,
            iteration=snap.iteration,
            stages=snap.stages,
            new_history=snap.history,
            history_start=start,
            events=snap.events,
            to_canonical=snap.to_canonical,
            version=snap.version,
            rigid=snap.rigid,
            texture_version=self._texture_version,
            texture=texture,
            outliers=self._outliers_delta(s),
        )

    def _outliers_delta(self, s: FitSession) -> list[LandmarkOutlier] | None:
        """The session's landmark outliers when they changed since the last update, else
        None. Worked out once per new step or new landmarks (68 residuals: well under a
        millisecond), and empty until the rigid stage has placed the template: before it the
        residuals say nothing about the landmarks."""
        key = (s.version, id(s.landmark_targets))
        if key == self._outliers_key:
            return None
        self._outliers_key = key
        current = s.landmark_outliers() if s.rigid is not None else []
        if self._outliers_sent is not None and same_outliers(current, self._outliers_sent):
            return None
        self._outliers_sent = current
        return current


def same_outliers(a: list[LandmarkOutlier], b: list[LandmarkOutlier],
                  tolerance: float = 0.01) -> bool:
    """The same landmarks, with robust weights and residuals (fractions of head height)
    within ``tolerance``: a change below it is not worth a message nor a redraw."""
    if [o.index for o in a] != [o.index for o in b]:
        return False
    return all(abs(x.weight - y.weight) <= tolerance and abs(x.residual - y.residual) <= tolerance
               for x, y in zip(a, b, strict=True))
