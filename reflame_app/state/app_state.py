"""The app's model: scan, FLAME assets, landmarks, the fit controller and every panel state.

Screen-free: each user action is a method (used by the panels and by tests alike); failures
become banner messages through ``MessageLog.guard`` and never end the app. Fitting and
landmark detection run in the fitting worker process (``reflame_core.worker.FitWorker``);
``poll()`` (once per frame) reads what it sent, never waiting, and forwards edits.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

from reflame_app.session_file import SessionData, autosave_dir, load_session, save_session
from reflame_app.state.first_run import FirstRunState
from reflame_app.state.fit_control import FitControlState
from reflame_app.state.frame import (
    FrameState,
    PendingFrame,
    frame_from_dict,
    frame_to_dict,
    front_flipped,
    turned,
)
from reflame_app.state.landmark_editor import LandmarkEditorState
from reflame_app.state.losses import LossPlotState
from reflame_app.state.messages import MessageLog
from reflame_app.state.views import ViewsPanelState
from reflame_core.assets.flame import FlameTemplate, LandmarkEmbedding
from reflame_core.assets.locate import find_flame_dir, save_flame_dir
from reflame_core.errors import AssetError, InputFileError
from reflame_core.fit.config import FitConfig
from reflame_core.fit.scene import cameras_from_config, scan_to_canonical
from reflame_core.fit.setup import landmark_targets, load_flame
from reflame_core.geometry.similarity import Similarity
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.mesh import Scan
from reflame_core.io.scan import load_scan
from reflame_core.landmarks.landmark_json import landmarks_from_dict, landmarks_to_dict
from reflame_core.landmarks.plausibility import detection_doubtful, detection_failed
from reflame_core.worker import FitWorker


class AppState:
    """Everything the GUI shows and edits, without a window.

    Frames: ``scan`` is in the file's own frame; ``scan_canonical`` (what is drawn, and what
    the orbit cameras look at) is ``scan.transformed(to_canonical)``; fitted vertices from
    the engine are canonical. ``to_canonical`` is ``frame.to_canonical``, set from the
    config's axes when a scan opens and changed with ``set_frame`` (a correction, or an
    automatic orientation).
    """

    def __init__(self, *, flame_dir: str | Path | None = None, device: str = "cpu",
                 preset: str = "default", autosave_path: Path | None = None,
                 autosave_every_s: float = 60.0):
        self.messages = MessageLog()
        self.first_run = FirstRunState()
        self.editor = LandmarkEditorState()
        self.fit = FitControlState()
        self.losses = LossPlotState()
        self.device = device
        self.preset = preset
        self.config = FitConfig.load(preset=preset)
        self.views = ViewsPanelState(cameras_from_config(self.config.data["cameras"]))
        self.flame_dir: Path | None = None
        self.template: FlameTemplate | None = None
        self.embedding: LandmarkEmbedding | None = None
        self.scan: Scan | None = None
        self.scan_canonical: Scan | None = None
        self.frame = FrameState()
        self.outliers_version = -1  # the worker's outliers_version last handed to the editor
        self.worker: FitWorker | None = None  # started with the first scan, kept until exit
        self.controller: FitWorker | None = None  # the worker, while it holds a fit session
        self.snapshot: Any = None
        self.loaded_vertices: np.ndarray | None = None
        self.scan_version = 0
        self._scan_query: MeshQuery | None = None
        self._detecting = False
        # Detection then places the 68 by a quick FLAME fit (``fit.landmark_refine``): the
        # jaw line holds far better; seconds on a GPU, tens of seconds on a CPU.
        self.place_by_fit = False
        self._detect_refined = False  # the running detection places them by a fit
        self._detect_frame = 0  # frame.version the running detection was asked in
        # frame.version an automatic orientation was asked in (None: none running), and
        # whether a detection waits for it.
        self._orient_asked: int | None = None
        self._detect_when_oriented = False
        self._reported_error: str | None = None
        self._views_sent = -1
        self.export_pending: Path | None = None
        self.export_result: dict | None = None
        self.autosave_path = autosave_path or autosave_dir() / "last_session.json"
        self.autosave_every_s = autosave_every_s
        self._last_autosave = time.monotonic()
        self._locate_flame(flame_dir)

    # ---- FLAME assets ----------------------------------------------------------------------
    def _locate_flame(self, cli_value: str | Path | None) -> None:
        """Use the FLAME folder from the CLI / env / user config if there is one; otherwise
        the first-run panel shows what is missing (not an error: a normal first start)."""
        try:
            folder = find_flame_dir(cli_value)
        except AssetError as exc:
            self.first_run.problem = str(exc)
            self.first_run.check(Path(cli_value) if cli_value else None)
            return
        with self.messages.guard("Loading FLAME assets"):
            self.set_flame_dir(folder, remember=False)

    @property
    def assets_ready(self) -> bool:
        return self.template is not None and self.embedding is not None

    def set_flame_dir(self, folder: str | Path, *, remember: bool = True) -> None:
        """Load the template and landmark embedding from ``folder``; with ``remember`` the
        folder is saved in the user config for the next start."""
        folder = Path(folder).expanduser()
        if not self.first_run.check(folder):
            self.first_run.problem = (f"{folder}: missing {', '.join(self.first_run.missing)}"
                                      f" (download FLAME from https://flame.is.tue.mpg.de)")
            raise AssetError(self.first_run.problem)
        assets = load_flame(folder)
        self.template, self.embedding = assets.template, assets.embedding
        self.flame_dir = folder
        if self.worker is not None:
            self.worker.set_assets(self.template, self.embedding)
        self.first_run.problem = None
        if remember:
            save_flame_dir(folder)
        self.messages.info(f"FLAME assets loaded from {folder}")

    # ---- scan ------------------------------------------------------------------------------
    def open_scan(self, path: str | Path) -> None:
        scan = load_scan(path)
        sim = scan_to_canonical(scan, self.config)  # the frame the fit will use
        self._stop_controller()
        worker = self._ensure_worker()
        self.scan = scan
        self._show_frame(sim, "axes")
        worker.open_scan(scan)
        self._detecting = False
        self._orient_asked, self._detect_when_oriented = None, False
        if self.config.get("frame.auto"):
            # Found in the worker (a detection pass: seconds); the scan shows in its own
            # axes until then.
            worker.find_frame()
            self._orient_asked = self.frame.version
        self.editor.set_landmarks(None)
        self.frame.landmarks_stale = False
        self.messages.info(f"Opened {Path(path).name}: {len(scan.vertices)} vertices, "
                           f"{'textured' if scan.has_texture else 'no texture'}")
        for note in scan.notes:
            self.messages.info(f"{Path(path).name}: {note}")

    @property
    def to_canonical(self) -> Similarity | None:
        """Scan -> canonical frame (None before a scan opens)."""
        return self.frame.to_canonical

    def _show_frame(self, sim: Similarity, source: str) -> None:
        """Put the scan in frame ``sim``: everything canonical drawn from the old one goes."""
        self.frame.set(sim, source)
        self.scan_canonical = self._need_scan().transformed(sim)
        self._scan_query = None
        self.snapshot = None
        self.loaded_vertices = None
        self.losses = LossPlotState()
        self.editor.set_outliers([])
        self.scan_version += 1

    # ---- the canonical frame ---------------------------------------------------------------
    def frame_change_costs(self) -> list[str]:
        """What changing the frame would discard or make stale, one line each; empty when it
        costs nothing (then ``set_frame`` applies it at once)."""
        costs = []
        if self.controller is not None:
            snap = self.snapshot
            where = (f" (at {snap.stage}, iteration {snap.iteration})"
                     if snap is not None and snap.stage else "")
            costs.append(f"The fit session{where} ends; its fit is dropped.")
        elif self.loaded_vertices is not None:
            costs.append("The fitted mesh loaded from the session is dropped.")
        if not self.frame.landmarks_stale:
            detected = self._detected_landmarks()
            if detected:
                costs.append(f"{detected} detected landmarks were found in the old "
                             "orientation: they are kept, but detect them again.")
        if self._detecting:
            costs.append("The detection running now is in the old orientation: detect "
                         "again when it ends.")
        return costs

    def set_frame(self, sim: Similarity, source: str = "corrected", *,
                  confirmed: bool = False, why: str = "") -> bool:
        """Make ``sim`` (scan -> canonical) the frame; any source sets it (the user's
        corrections, an automatic orientation). A change that would cost work (see
        ``frame_change_costs``) waits in ``frame.pending`` unless ``confirmed``; returns
        whether it was applied. ``why`` ends the message that says so."""
        self._need_scan()
        costs = self.frame_change_costs()
        if costs and not confirmed:
            self.frame.pending = PendingFrame(sim, source, costs)
            return False
        self._stop_controller()
        stale = self.frame.landmarks_stale or self._detected_landmarks() > 0 or self._detecting
        self._show_frame(sim, source)
        self.frame.landmarks_stale = stale
        self.messages.info(f"Scan frame: {self.frame.describe()}{why}")
        return True

    def _detected_landmarks(self) -> int:
        """How many placed landmarks come from the detector (not edited by hand)."""
        lms = self.editor.landmarks
        if lms is None:
            return 0
        return sum(p == "detected" for p, on in zip(lms.provenance, lms.placed_mask,
                                                     strict=True) if on)

    def confirm_frame(self) -> None:
        """Apply the frame change waiting for a yes."""
        p = self.frame.pending
        if p is not None:
            self.set_frame(p.frame, p.source, confirmed=True)

    def cancel_frame(self) -> None:
        self.frame.pending = None

    def turn_frame(self, axis: str, turns: int = 1) -> bool:
        """Turn the scan by ``turns`` quarter turns about canonical ``axis`` (x, y or z),
        starting from a change already waiting, so that clicks add up."""
        return self.set_frame(turned(self._frame_to_correct(), axis, turns))

    def flip_front(self) -> bool:
        """Half a turn about up: the face where the back of the head was."""
        return self.set_frame(front_flipped(self._frame_to_correct()))

    def _frame_to_correct(self) -> Similarity:
        p = self.frame.pending
        if p is not None:
            return p.frame
        self._need_scan()
        return self.frame.to_canonical

    def _ensure_worker(self) -> FitWorker:
        """The fitting worker process, started on first use (it then warms up while the
        user looks at the scan) and restarted by itself if it dies. One that crashed too
        often is replaced here, when the user asks for work again (the fit starts over)."""
        if self.worker is not None and self.worker.state == "crashed":
            self.worker = None
            self.controller = self.fit.controller = None
            self._detecting = False
            self.export_pending = None
        if self.worker is None:
            self.worker = FitWorker(self.device)
            self.worker.warm_up()
            if self.assets_ready:
                self.worker.set_assets(self.template, self.embedding)
            if self.scan is not None:
                self.worker.open_scan(self.scan)
        return self.worker

    def _need_scan(self) -> Scan:
        if self.scan is None:
            raise RuntimeError("open a scan first")
        return self.scan

    # ---- landmarks -------------------------------------------------------------------------
    def detect_landmarks(self, wait: bool = True) -> None:
        """Detect landmarks on the scan, in the worker process. With ``wait=False`` (the GUI)
        it returns at once and ``poll()`` applies the result when it comes."""
        if self.detecting:
            self.messages.info("Landmark detection is already running")
            return
        self._need_scan()
        worker = self._ensure_worker()
        if self._orient_asked is not None:  # detect in the frame being found, not the axes
            if not wait:
                self._detect_when_oriented = True
                self.messages.info("Landmark detection starts once the scan is oriented")
                return
            self._apply_found_frame(worker.wait_result("find_frame", timeout=600.0))
        refine = self.place_by_fit and self.template is not None
        worker.detect(self.to_canonical, refine=refine)
        self._detect_refined = refine
        self._detecting = True
        self._detect_frame = self.frame.version
        self.messages.info("Detecting landmarks, then placing them by a FLAME fit..." if refine
                           else "Detecting landmarks...")
        if wait:
            self._apply_detection(worker.wait_result("detect", timeout=600.0))

    @property
    def detecting(self) -> bool:
        """A detection is running, or waits for the scan's orientation."""
        return self._detecting or self._detect_when_oriented

    def _apply_detection(self, result: Any) -> None:
        self._detecting = False
        if result.error is not None:
            self.messages.error(f"Landmark detection failed: {result.error}")
            return
        lms = result.value
        self.editor.set_landmarks(lms)
        self.frame.landmarks_stale = self._detect_frame != self.frame.version
        placed = int(lms.placed_mask.sum())
        how = ", the 68 placed by a FLAME fit" if self._detect_refined else ""
        failed = detection_failed(lms)
        if placed and not failed:
            how += self._frame_the_head(lms)
        # A FLAME fit's placement carries the fit's closeness to the scan, not the views'
        # agreement: only the detection itself is doubted.
        doubt = None if self._detect_refined else detection_doubtful(lms)
        if placed == 0:
            self.messages.error("Detection found no face on the renders of the scan: check "
                                "its orientation (the arrows) or place the landmarks by hand.")
        elif failed:  # kept for the artist to correct; `reflame fit` would fit without them
            self.messages.error(f"Detected {placed} of {len(lms)} landmarks{how}, but {failed}. "
                                "Correct them or place them by hand before fitting.")
        elif doubt:  # `reflame fit` fits to them and warns: so does the studio
            self.messages.warning(f"Detected {placed} of {len(lms)} landmarks{how}, but {doubt} "
                                "before fitting.")
        else:
            self.messages.info(f"Detected {placed} of {len(lms)} landmarks{how}")

    def _frame_the_head(self, lms: Any) -> str:
        """On a scan two head lengths long or more (a stand, a body), a frame found from the
        face is centred on and sized to the head the detected landmarks mark, its turn kept,
        as ``reflame fit`` sets it (``landmarks.orient.head_frame``): the head then fills the
        views the fit renders. Not while a fit session holds the frame, nor over the user's
        own frame. Returns what to add to the detection's message ("" where nothing moved)."""
        if (self.frame.source != "auto" or self.controller is not None
                or self.frame.landmarks_stale):
            return ""
        from reflame_core.landmarks.orient import head_frame

        scan = self._need_scan()
        framed, where = head_frame(scan, lms.positions(scan.vertices, scan.faces)[:68],
                                   self.to_canonical.rotation)
        if where is None:
            return ""
        self._show_frame(framed, "auto")
        return f"; the scan is framed on the head in {where}"

    @property
    def orienting(self) -> bool:
        return self._orient_asked is not None

    def _apply_found_frame(self, result: Any) -> None:
        """Take the frame the worker found, unless the frame was set since it was asked for
        (a correction, a loaded session); a change that would cost work asks first."""
        asked, self._orient_asked = self._orient_asked, None
        if result.error is not None:
            self.messages.error(f"Could not look for the face to orient the scan: "
                                f"{result.error}")
        elif asked == self.frame.version:
            found = result.value
            if found.candidates == 0:
                self.messages.info("No face found to orient the scan by: it stays in its own "
                                   "axes (turn it in the Orientation panel if needed)")
            else:
                self.set_frame(found.to_canonical, "auto",
                               why=f"; by its face: {found.describe()}")
        if self._detect_when_oriented:
            self._detect_when_oriented = False
            self.detect_landmarks(wait=False)

    # ---- fitting ---------------------------------------------------------------------------
    def start_session(self) -> None:
        """A new fit session in the worker on the current scan, landmarks and config."""
        if not self.assets_ready:
            raise AssetError("set the FLAME asset folder first (File > FLAME folder)")
        scan = self._need_scan()
        self._stop_controller()
        self.config.set("cameras", self.views.layout_of(self.views.cameras))
        lms = self.editor.landmarks
        targets = landmark_targets(lms, scan)  # as make_session turns them into targets
        if targets is None:
            self.messages.warning("Fitting without landmarks (none detected or placed): "
                                  "nothing places the face, so it may end up misplaced")
        worker = self._ensure_worker()
        worker.new_session(self.config, targets, self.to_canonical)
        self.controller = worker
        self.editor.mark_sent()
        self._views_sent = self.views.version
        self.fit.attach(self.controller, self.config.data["stages"])
        self.editor.set_outliers([])
        self.outliers_version = -1
        self.losses = LossPlotState()
        self._reported_error = None

    def _stop_controller(self) -> None:
        """Forget the fit session (the worker drops it with the next scan or session)."""
        if self.controller is not None and self.controller.state not in ("crashed", "stopped"):
            self.controller.pause()
        self.controller = None
        self.fit.controller = None
        self.snapshot = None

    def poll(self) -> bool:
        """Once per frame: read the latest snapshot (non-blocking), forward landmark edits,
        report engine errors. Returns whether a new snapshot arrived."""
        w = self.worker
        if w is None:
            return False
        w.poll()
        for notice in w.take_notices():
            self.messages.error(notice)
        if self._orient_asked is not None:
            result = w.take_result("find_frame")
            if result is not None:
                self._apply_found_frame(result)
        if self._detecting:
            result = w.take_result("detect")
            if result is not None:
                self._apply_detection(result)
        self._check_export()
        c = self.controller
        if c is None:
            return False
        lms = self.editor.take_changes()
        if lms is not None:
            c.set_landmarks(landmark_targets(lms, self._need_scan()))
        if self.views.version != self._views_sent:
            self._views_sent = self.views.version
            c.set_cameras(copy.deepcopy(self.views.cameras))
        err = c.last_error
        if c.state == "error" and err is not None and str(err) != self._reported_error:
            self._reported_error = str(err)
            self.messages.error(f"Fitting stopped: {c.last_error}")
        snap = c.latest_snapshot()
        if c.outliers_version != self.outliers_version:
            self.outliers_version = c.outliers_version
            self.editor.set_outliers(c.landmark_outliers())
        if snap is None or snap is self.snapshot:
            return False
        self.snapshot = snap
        self.losses.update(snapshot_history(snap))
        return True

    @property
    def fitted_vertices(self) -> np.ndarray | None:
        """(5023,3) canonical-frame fit: the engine's latest, else one from a loaded session."""
        if self.snapshot is not None:
            return self.snapshot.vertices
        return self.loaded_vertices

    def scan_distances(self, vertices: np.ndarray) -> np.ndarray:
        """(5023,) distance of each fitted vertex to the scan surface, canonical units."""
        if self.scan_canonical is None:
            raise RuntimeError("open a scan first")
        if self._scan_query is None:
            self._scan_query = MeshQuery(self.scan_canonical.vertices, self.scan_canonical.faces)
        return self._scan_query.closest(vertices).distance

    # ---- results ---------------------------------------------------------------------------
    def export(self, out_dir: str | Path) -> None:
        """Write the fit with the core's ``write_fit_outputs`` (meshes, texture, landmarks,
        losses, config, report) plus the edited scan landmarks. Runs in the worker (which
        owns the session); ``export_pending`` is set until ``poll()`` sees it done."""
        if self.controller is None:
            raise RuntimeError("nothing to export: run a fit first")
        out = Path(out_dir).expanduser()
        lms = self.editor.landmarks.copy() if self.editor.landmarks is not None else None
        self.export_pending = out
        self.controller.export(out, lms)

    def _check_export(self) -> None:
        if self.export_pending is None or self.worker is None:
            return
        result = self.worker.take_result("export")
        if result is None:
            return
        out, self.export_pending = self.export_pending, None
        if result.error is not None:
            self.messages.error(f"Export to {out} failed: {result.error}")
        else:
            self.export_result = result.value
            warnings = (result.value or {}).get("warnings") or []
            if warnings:
                # The report's warnings are the user's to act on before using the fit.
                self.messages.warning(f"Exported the fit to {out}, but: " + "; ".join(warnings))
            else:
                self.messages.info(f"Exported the fit to {out}")

    def request_view_images(self, view: int) -> None:
        """Ask the fitting worker for the residual images of one view (mask difference,
        depth residual, landmark reprojection); ``view_images()`` returns them when ready."""
        if self.controller is None:
            raise RuntimeError("no fit session yet")
        self.controller.request_residuals([view])

    def view_images(self) -> dict[str, np.ndarray] | None:
        """Latest residual images as displayable arrays: signed (H,W) maps, and the
        landmark reprojection drawn as a colour image (fit red, targets green)."""
        res = self.controller.latest_residuals() if self.controller is not None else None
        if res is None:
            return None
        out = {"mask difference": res["mask_diff"][0], "depth residual": res["depth_residual"][0]}
        if "landmarks_fit_px" in res:
            out["landmark reprojection"] = draw_reprojection(
                res["mask_diff"][0].shape, res["landmarks_fit_px"][0],
                np.asarray(res["landmarks_scan_px"][0]))
        return out

    # ---- sessions --------------------------------------------------------------------------
    def session_data(self) -> SessionData:
        lms = self.editor.landmarks
        return SessionData(
            scan_path=str(self.scan.path) if self.scan is not None and self.scan.path else None,
            flame_dir=str(self.flame_dir) if self.flame_dir else None,
            overrides=self.fit.overrides(),
            landmarks=landmarks_to_dict(lms) if lms is not None else None,
            fitted_vertices=self.fitted_vertices,
            frame=(frame_to_dict(self.to_canonical, self.frame.source)
                   if self.to_canonical is not None else None),
        )

    def save_session(self, path: str | Path) -> Path:
        return save_session(path, self.session_data())

    def load_session(self, path: str | Path) -> None:
        data = load_session(path)
        if data.flame_dir and not self.assets_ready:
            self.set_flame_dir(data.flame_dir, remember=False)
        if data.scan_path:
            self.open_scan(data.scan_path)
        if data.frame is not None and self.scan is not None:
            try:
                sim, source = frame_from_dict(data.frame)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputFileError(Path(path), f"frame: {exc}") from None
            self._show_frame(sim, source)
        for key, value in data.overrides.items():
            self.config.set(key, value)
        if data.landmarks is not None and self.scan is not None:
            self.editor.set_landmarks(landmarks_from_dict(data.landmarks, Path(path),
                                                          num_faces=len(self.scan.faces)))
        self.loaded_vertices = data.fitted_vertices
        self.messages.info(f"Session loaded from {path}")

    def autosave(self, *, force: bool = False) -> Path | None:
        """Save to the autosave file every ``autosave_every_s`` seconds (or now with force);
        nothing to save (no scan) writes nothing."""
        now = time.monotonic()
        if self.scan is None or (not force and now - self._last_autosave < self.autosave_every_s):
            return None
        self._last_autosave = now
        with self.messages.guard("Autosave"):
            return self.save_session(self.autosave_path)
        return None

    def shutdown(self) -> None:
        """On exit: autosave, then end the worker process (within a second)."""
        self.autosave(force=True)
        self.controller = self.fit.controller = None
        if self.worker is not None:
            self.worker.close()


def snapshot_history(snap: Any) -> list[tuple[str, int, dict[str, float]]]:
    """The snapshot's loss history (StepReports) as (stage, iteration, losses) records."""
    return [(r.stage, r.iteration, r.losses) for r in snap.history]


def draw_reprojection(shape: tuple[int, int], fit_px: np.ndarray, target_px: np.ndarray
                      ) -> np.ndarray:
    """(H,W,3) float image: target landmarks green, fitted ones red, joined by grey lines."""
    h, w = shape
    img = np.full((h, w, 3), 0.1, np.float32)

    def dot(p: np.ndarray, color: tuple[float, float, float], r: int = 2) -> None:
        if not np.all(np.isfinite(p)):
            return
        x, y = int(p[0]), int(p[1])
        img[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = color

    for a, b in zip(fit_px, target_px, strict=True):
        if np.all(np.isfinite(a)) and np.all(np.isfinite(b)):
            for t in np.linspace(0.0, 1.0, 16):
                dot(a + t * (b - a), (0.5, 0.5, 0.5), 0)
        dot(b, (0.2, 0.9, 0.2))
        dot(a, (0.95, 0.2, 0.2))
    return img
