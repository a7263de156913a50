"""The studio: one Polyscope window, panels drawn each frame by the user callback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import polyscope as ps
import polyscope.imgui as psim

from reflame_app.panels.display_panel import draw_display
from reflame_app.panels.file_panel import FilePanel
from reflame_app.panels.first_run import draw_first_run
from reflame_app.panels.fit_panel import draw_fit
from reflame_app.panels.frame_panel import draw_frame
from reflame_app.panels.landmarks_panel import draw_landmarks
from reflame_app.panels.losses_panel import draw_losses
from reflame_app.panels.messages import draw_banner
from reflame_app.panels.views_panel import ViewsPanel
from reflame_app.scene import SceneSync
from reflame_app.state.app_state import AppState
from reflame_app.state.frame import frame_arrows
from reflame_app.state.manual_landmarks import complete_key_points
from reflame_app.state.pacing import FramePacer
from reflame_app.state.picking import ClickGesture, pick_scan
from reflame_app.state.residuals import scan_to_fit_distances
from reflame_app.state.views import DockLayout, focus_view, frame_box
from reflame_core.errors import ReflameError

STUDIO_WINDOW = "ReFLAME Studio"
RESIDUAL_WINDOW = "residual images"  # Polyscope names an image window after its quantity
DISTANCE_EVERY_S = 0.5  # per-vertex distances cost ~10-50 ms: refresh at most this often


class Studio:
    """Glue between the AppState, the scene and the panels; ``frame()`` is the callback."""

    def __init__(self, app: AppState):
        self.app = app
        self.scene = SceneSync()
        self.files = FilePanel()
        self.views_panel = ViewsPanel()
        self.clicks = ClickGesture()
        self._clear_selection_frames = 0
        self._scan_dist_key: object = None
        self._scan_dist_time = 0.0
        self._scan_version = -1
        self._lmk_version: object = None
        self._frame_key: object = None
        self._fit_version: object = None
        self._distances: np.ndarray | None = None
        self._distance_time = 0.0
        self.frame_seconds: list[float] = []
        self.pacer = FramePacer()
        self.paced = True  # False: frames as fast as the caller ticks them (tests)
        self._callback_end: float | None = None

    def frame(self) -> None:
        if self._callback_end is not None:  # Polyscope drew the last frame in between
            self.pacer.note_draw(time.perf_counter() - self._callback_end)
        if self.paced:
            self.pace()
        t0 = time.perf_counter()
        app = self.app
        with app.messages.guard("Updating"):
            app.poll()
            self.sync_scene()
            self.handle_pick()
        layout = self.layout()
        psim.SetNextWindowPos(layout.dock_pos, psim.ImGuiCond_Always)
        psim.SetNextWindowSize(layout.dock_size, psim.ImGuiCond_Always)
        psim.SetNextWindowBgAlpha(1.0)  # opaque: nothing of the 3D scene shows through
        if psim.Begin(STUDIO_WINDOW, psim.ImGuiWindowFlags_NoMove
                      | psim.ImGuiWindowFlags_NoResize | psim.ImGuiWindowFlags_NoCollapse):
            draw_banner(app.messages)
            if not app.assets_ready:
                draw_first_run(app)
            for draw in (lambda: self.files.draw(app), lambda: draw_frame(app),
                         lambda: draw_landmarks(app),
                         lambda: draw_fit(app), lambda: draw_losses(app.losses),
                         lambda: self.views_panel.draw(app, self.scene),
                         lambda: draw_display(self.scene)):
                with app.messages.guard("Drawing a panel"):
                    draw()
        psim.End()
        with app.messages.guard("Showing the residual images"):
            self.views_panel.poll_images(app, self.scene)
        with app.messages.guard("Arranging the windows"):
            self.place_windows(layout)
        app.autosave()
        self._callback_end = time.perf_counter()
        self.frame_seconds.append(self._callback_end - t0)
        del self.frame_seconds[:-1000]

    def pace(self) -> None:
        """Sleep until this frame is due (the GIL is free meanwhile, and the CPU too)."""
        io = psim.GetIO()
        mouse = io.MouseDelta
        input_seen = bool(
            abs(mouse[0]) + abs(mouse[1]) > 0 or any(io.MouseDown) or io.MouseWheel
            or io.MouseWheelH or psim.IsAnyItemActive() or io.WantTextInput)
        app = self.app
        # Only a running fit changes the picture by itself; detection and export show a
        # line of text, which the idle rate keeps up to date.
        working = app.controller is not None and app.fit.state == "running"
        now = time.monotonic()
        delay = self.pacer.delay(now, self.pacer.fps(now, input_seen=input_seen,
                                                     working=working))
        if delay > 0:
            time.sleep(delay)
    def layout(self) -> DockLayout:
        w, h = ps.get_window_size() if ps.is_initialized() else (1280, 720)
        return DockLayout(float(w), float(h))

    def place_windows(self, layout: DockLayout) -> None:
        """Frame the head in the area the panels leave free (on a new scan or on request),
        and put the residual-image window beside the dock the first frames it is shown."""
        scene = self.scene
        if scene.frame_request and scene.scan_bounds is not None:
            scene.frame_request = False
            self.app.views.selected = None  # no longer looking through an orbit view
            scene.set_looked_through(None)
            left, right = layout.free_x
            eye, target = frame_box(*scene.scan_bounds, ps.get_vertical_fov_degrees(),
                                    layout.window_w, layout.window_h, left, right)
            ps.look_at_dir(eye, target, (0.0, 1.0, 0.0), fly_to=False)
        self.focus_landmark(layout)
        if scene.residual_place_frames > 0:
            scene.residual_place_frames -= 1
            h, w = scene.residual_shape or (1, 3)
            sw = layout.side_window_size[0]
            size = (sw, sw * h / w + 40)
            psim.SetWindowSize(RESIDUAL_WINDOW, size)
            psim.SetWindowPos(RESIDUAL_WINDOW, layout.side_window_pos(size[1]))

    def focus_landmark(self, layout: DockLayout) -> None:
        """Turn the view to the landmark the user picked in a list (``focus_request``)."""
        app, scene = self.app, self.scene
        index, app.editor.focus_request = app.editor.focus_request, None
        if index is None or app.scan_canonical is None or scene.scan_bounds is None:
            return
        self.app.views.selected = None
        scene.set_looked_through(None)
        low, high = scene.scan_bounds
        point = app.editor.position(index, app.scan_canonical.vertices,
                                    app.scan_canonical.faces)
        left, right = layout.free_x
        eye, target = focus_view(point, (low + high) / 2, float(np.max(high - low)),
                                 ps.get_vertical_fov_degrees(), layout.window_w,
                                 layout.window_h, left, right)
        ps.look_at_dir(eye, target, (0.0, 1.0, 0.0), fly_to=True)

    def sync_scene(self) -> None:
        app, scene = self.app, self.scene
        if app.scan_version != self._scan_version:
            self._scan_version = app.scan_version
            scene.set_scan(app.scan_canonical)
            scene.frame_request = True
            self._fit_version = None
            self._lmk_version = None
            self._frame_key = None
        frame_key = (app.scan_version, scene.style.show_frame)
        if frame_key != self._frame_key:
            self._frame_key = frame_key
            scene.set_frame_arrows(frame_arrows(app.scan_canonical.vertices)
                                   if app.scan_canonical is not None else None)
        lmk_key = (app.editor.scene_key(), scene.style.landmarks_by_confidence)
        if lmk_key != self._lmk_version and app.scan_canonical is not None:
            self._lmk_version = lmk_key
            scene.set_landmarks(
                app.editor.scene_arrays(app.scan_canonical.vertices, app.scan_canonical.faces),
                selected=app.editor.placed_index())
        scene.set_cameras(app.views.cameras, app.views.version)
        verts = app.fitted_vertices
        key = app.snapshot.version if app.snapshot is not None else id(verts)
        now = time.monotonic()
        want_dist = scene.style.show_distances and verts is not None
        dist_due = want_dist and (self._distances is None or now - self._distance_time
                                  > DISTANCE_EVERY_S)
        if key != self._fit_version or dist_due:
            self._fit_version = key
            if dist_due:
                self._distances = app.scan_distances(verts)
                self._distance_time = now
            scene.set_fit(verts, app.template.faces if app.template is not None else None,
                          self._distances if want_dist else None)
        self.sync_scan_distances(verts, now)
        scene.apply_style()

    def sync_scan_distances(self, verts: np.ndarray | None, now: float) -> None:
        """Scan-to-fit distance colour map on the scan, refreshed at most every
        DISTANCE_EVERY_S while the fit changes."""
        app, scene = self.app, self.scene
        want = (scene.style.show_scan_distances and verts is not None
                and app.scan_canonical is not None and app.template is not None)
        if not want:
            if self._scan_dist_key is not None:
                self._scan_dist_key = None
                scene.set_scan_distances(None)
            return
        key = (self._fit_version, scene.style.auto_range, scene.style.max_distance)
        if key == self._scan_dist_key or now - self._scan_dist_time < DISTANCE_EVERY_S:
            return
        self._scan_dist_key, self._scan_dist_time = key, now
        scene.set_scan_distances(scan_to_fit_distances(
            app.scan_canonical.vertices, verts, app.template.faces))

    def handle_pick(self) -> None:
        """A click on the scan while a landmark is being placed moves it there. The pick is
        the studio's own ray cast against the scan, whatever else is drawn in front."""
        app = self.app
        ed = app.editor
        click = self.clicks.update(psim.IsMouseClicked(0), psim.IsMouseReleased(0),
                                   tuple(psim.GetMousePos()), psim.GetIO().WantCaptureMouse)
        if click is not None and ed.placing and app.scan_canonical is not None:
            origin = ps.get_view_camera_parameters().get_position()
            hit = pick_scan(app.scan_canonical.vertices, app.scan_canonical.faces, origin,
                            ps.screen_coords_to_world_ray(click))
            if hit is not None and ed.pick_face(hit.face, hit.bary):
                self._clear_selection_frames = 3  # Polyscope's own pick of the same click
        if self._clear_selection_frames > 0:
            self._clear_selection_frames -= 1
            ps.reset_selection()
        if ed.key_points_ready:
            with app.messages.guard("Initialising the landmarks from the key points"):
                if complete_key_points(ed, app.scan_canonical, app.template, app.embedding):
                    app.messages.info("All 68 landmarks initialised from the 5 key points: "
                                      "check them and move any that are off")


def init_polyscope(backend: str | None = None) -> None:
    # Software GL (Mesa llvmpipe) draws with a thread per core by default; the fit needs
    # the cores more than the window does. Ignored by hardware drivers.
    os.environ.setdefault("LP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 4)))
    ps.set_program_name("ReFLAME Studio")
    ps.set_use_prefs_file(False)
    ps.set_up_dir("y_up")
    ps.set_front_dir("z_front")
    ps.set_ground_plane_mode("none")
    ps.set_open_imgui_window_for_user_callback(False)  # the studio docks its own window
    ps.set_errors_throw_exceptions(True)
    ps.set_display_message_popups(False)
    # One pass: "pretty" depth-peels 8 passes, 7x the cost under software GL, and the
    # overlay is one see-through mesh over an opaque scan, which simple blending draws right.
    ps.set_transparency_mode("simple")
    ps.init(backend or "auto")
    # Frame pacing is the studio's (FramePacer): Polyscope's limiter and vsync busy-wait.
    ps.set_max_fps(-1)
    ps.set_enable_vsync(False)
    # Scene extents follow the scan only (SceneSync.set_scan): frusta and landmark spheres
    # must not change what Reset View frames.
    ps.set_automatically_compute_scene_extents(False)


def make_studio(scan_path: str | Path | None = None, flame_dir: str | Path | None = None,
                *, device: str = "cpu", preset: str = "default") -> Studio:
    """The state and callback, with the scan opened when given (errors go to the banner)."""
    app = AppState(flame_dir=flame_dir, device=device, preset=preset)
    if scan_path is not None:
        with app.messages.guard("Opening the scan"):
            app.open_scan(scan_path)
    studio = Studio(app)
    ps.set_user_callback(studio.frame)
    return studio


def run_app(scan_path: str | Path | None = None, flame_dir: str | Path | None = None, *,
            device: str = "cpu", preset: str = "default", backend: str | None = None) -> int:
    """Open the ReFLAME Studio window (blocks until it is closed); autosaves on exit."""
    try:
        init_polyscope(backend)
    except RuntimeError as exc:
        raise ReflameError(
            "cannot open the studio window: no usable display/OpenGL was found "
            f"({str(exc).splitlines()[0][:160]}). On a machine without a screen use "
            "`reflame fit SCAN --out DIR`, or start the studio under `xvfb-run`."
        ) from None
    studio = make_studio(scan_path, flame_dir, device=device, preset=preset)
    try:
        ps.show()
    finally:
        studio.app.shutdown()
    return 0


def imgui_ok() -> bool:
    """Polyscope's ImGui bindings are importable (used by the CLI to fail early)."""
    return hasattr(psim, "Begin")
