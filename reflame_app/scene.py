"""Mirror the app state into Polyscope structures: scan, live FLAME overlay, landmarks,
orbit cameras, per-view images. Everything is in the canonical fitting frame.

Updates are change-driven (versions / snapshot identity) so a frame with nothing new costs
almost nothing; the fitted overlay is pushed whenever a new snapshot arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polyscope as ps

from reflame_app.state.confidence import confidence_colors, confidence_sizes
from reflame_app.state.frame import FrameArrows
from reflame_app.state.landmark_editor import LandmarkDisplay
from reflame_app.state.residuals import residual_grid, robust_limits
from reflame_core.geometry.frame import in_head_box
from reflame_core.io.image import downscaled
from reflame_core.io.mesh import Scan

SCAN = "scan"
FIT = "FLAME fit"
LMK_DETECTED = "landmarks (detected)"
LMK_EDITED = "landmarks (edited)"
LMK_SELECTED = "landmark (selected)"
LMK_OUTLIERS = "landmarks the fit contradicts"
FRAME_UP = "frame: up"
FRAME_FRONT = "frame: front"
CAMERA_GROUP = "orbit views"
RESIDUAL_IMAGE = "residual images"
CAMERA_WIDGET_SIZE = 0.05  # frustum size, relative to the scene (scan) size
DISPLAY_TEXTURE_SIDE = 4096  # largest side of the scan texture shown

DETECTED_COLOR = (0.10, 0.55, 1.00)
EDITED_COLOR = (1.00, 0.55, 0.05)
SELECTED_COLOR = (0.10, 0.95, 1.00)  # cyan: red is the confidence ramp's "doubtful"
DISABLED_COLOR = (0.45, 0.45, 0.45)
OUTLIER_COLOR = (1.00, 0.10, 0.90)  # magenta halo around a landmark the fit contradicts
UP_COLOR = (0.20, 0.85, 0.30)
FRONT_COLOR = (0.20, 0.45, 1.00)
LANDMARK_RADIUS = 0.016  # relative to the scene; a landmark of confidence 0 (see SMALLEST)


@dataclass
class OverlayStyle:
    """How the FLAME overlay is drawn (the Display panel edits this)."""

    show_fit: bool = True
    wireframe: bool = True
    transparency: float = 0.6  # 1 = opaque
    show_distances: bool = False  # fit-to-scan distance on the FLAME overlay
    show_scan_distances: bool = False  # scan-to-fit distance on the scan
    auto_range: bool = True  # colour-map top from the data (robust percentile)
    show_scan: bool = True
    show_cameras: bool = False  # the orbit-view frusta are clutter unless asked for
    show_frame: bool = True  # the scan's up / front arrows
    landmarks_by_confidence: bool = True  # else: detected blue, edited orange
    max_distance: float = 0.1  # colour-map top, canonical units (when not auto_range)


def _scan_colors(scan: Scan) -> np.ndarray | None:
    """(V,3) float colours in 0..1 when the scan has vertex colours."""
    if scan.vertex_colors is not None:
        return np.asarray(scan.vertex_colors, np.float32) / 255.0
    return None


class SceneSync:
    """Owns the Polyscope structures; call the ``set_*`` methods when their data changes."""

    def __init__(self) -> None:
        self.style = OverlayStyle()
        self._fit_faces: np.ndarray | None = None
        self._views_version = -1
        self._style_applied: OverlayStyle | None = None
        self._group: ps.Group | None = None
        self.scan_bounds: tuple[np.ndarray, np.ndarray] | None = None
        self.looked_through: int | None = None
        self.distance_ranges: dict[str, float] = {}
        self.residual_shape: tuple[int, int] | None = None
        self.residual_captions: list[str] = []
        self.residual_place_frames = 0  # frames left to place the residual window
        self.frame_request = False  # frame the scan in the free part of the window

    # --- scan ---------------------------------------------------------------------------
    def set_scan(self, scan: Scan | None) -> None:
        """Show the scan (canonical frame): textured through per-corner UVs when it has a
        texture, else its vertex colours, else plain."""
        if ps.has_surface_mesh(SCAN):
            ps.remove_surface_mesh(SCAN)
        if scan is None:
            return
        m = ps.register_surface_mesh(SCAN, scan.vertices, scan.faces, smooth_shade=True,
                                     material="flat" if scan.has_texture else "clay")
        m.set_selection_mode("faces_only")
        self.scan_bounds = scene_bounds(scan.vertices)
        set_scene_extents(*self.scan_bounds)
        if scan.has_texture:
            corner_uv = np.asarray(scan.uv, np.float32)[np.asarray(scan.uv_faces).reshape(-1)]
            m.add_parameterization_quantity("uv", corner_uv, defined_on="corners",
                                            coords_type="unit", enabled=False)
            # A view needs no 8-16K photogrammetry texture (16K² as float32 is 3 GB, and
            # past some GPUs' largest texture).
            tex = downscaled(scan.texture, DISPLAY_TEXTURE_SIDE).astype(np.float32) / 255.0
            # Row 0 of Scan.texture is the top (v = 1): Polyscope's upper_left origin.
            m.add_color_quantity("texture", tex, defined_on="texture", param_name="uv",
                                 image_origin="upper_left", enabled=True)
        else:
            colors = _scan_colors(scan)
            if colors is not None:
                m.add_color_quantity("colour", colors, enabled=True)

    # --- fitted FLAME -------------------------------------------------------------------
    def set_fit(self, vertices: np.ndarray | None, faces: np.ndarray,
                distances: np.ndarray | None = None) -> None:
        """Show / update the fitted FLAME mesh (5023,3); ``distances`` (5023,) per-vertex
        scan distance shown as a colour map when enabled."""
        if vertices is None:
            if ps.has_surface_mesh(FIT):
                ps.remove_surface_mesh(FIT)
            self._fit_faces = None
            return
        if ps.has_surface_mesh(FIT) and self._fit_faces is faces:
            m = ps.get_surface_mesh(FIT)
            m.update_vertex_positions(vertices)
        else:
            m = ps.register_surface_mesh(FIT, vertices, faces, color=(0.85, 0.85, 0.95),
                                         smooth_shade=True)
            self._fit_faces = faces
            self._style_applied = None
        if distances is not None and self.style.show_distances:
            top = self.colour_top("fit", distances)
            m.add_scalar_quantity("scan distance", distances, enabled=True, cmap="reds",
                                  vminmax=(0.0, top))
        self.apply_style()

    def colour_top(self, key: str, distances: np.ndarray) -> float:
        """Top of a distance colour map: robust (98th percentile) when ``auto_range``."""
        top = (robust_limits(distances, signed=False)[1] if self.style.auto_range
               else self.style.max_distance)
        self.distance_ranges[key] = top
        return top

    def set_scan_distances(self, distances: np.ndarray | None) -> None:
        """Scan-to-fit distance per scan vertex as a colour map on the scan (None: off)."""
        if not ps.has_surface_mesh(SCAN):
            return
        m = ps.get_surface_mesh(SCAN)
        if distances is None:
            m.remove_quantity("fit distance", error_if_absent=False)
            self._style_applied = None
            return
        m.add_scalar_quantity("fit distance", distances, enabled=True, cmap="reds",
                              vminmax=(0.0, self.colour_top("scan", distances)))

    def apply_style(self) -> None:
        st = self.style
        if self._style_applied == st:
            return
        if ps.has_surface_mesh(FIT):
            m = ps.get_surface_mesh(FIT)
            m.set_enabled(st.show_fit)
            m.set_edge_width(1.0 if st.wireframe else 0.0)
            m.set_edge_color((0.1, 0.1, 0.3))
            m.set_transparency(float(st.transparency))
            if not st.show_distances:
                m.remove_quantity("scan distance", error_if_absent=False)
        if ps.has_surface_mesh(SCAN):
            scan = ps.get_surface_mesh(SCAN)
            scan.set_enabled(st.show_scan)
            if not st.show_scan_distances:
                scan.remove_quantity("fit distance", error_if_absent=False)
        if self._group is not None:
            self._group.set_enabled(st.show_cameras)
        self._hide_looked_through()
        self._style_applied = OverlayStyle(**st.__dict__)

    # --- landmarks ----------------------------------------------------------------------
    def set_landmarks(self, lms: LandmarkDisplay | None, selected: int | None = None) -> None:
        """The placed landmarks (canonical), ``selected`` a row of ``lms``.

        Detected and edited landmarks are separate point clouds so the user sees at a glance
        what was changed by hand (edited: orange). Detected ones are coloured and sized by
        confidence (``confidence_colors``: red and large = doubtful), or plain blue when
        ``landmarks_by_confidence`` is off; disabled ones are grey. A magenta halo rings the
        landmarks the fit contradicts."""
        for name in (LMK_DETECTED, LMK_EDITED, LMK_SELECTED, LMK_OUTLIERS):
            if ps.has_point_cloud(name):
                ps.remove_point_cloud(name)
        if lms is None or len(lms.positions) == 0:
            return
        pos, edited, enabled = lms.positions, lms.edited, lms.enabled
        by_conf = self.style.landmarks_by_confidence
        for name, sel in ((LMK_DETECTED, ~edited), (LMK_EDITED, edited)):
            if not sel.any():
                continue
            detected = name == LMK_DETECTED
            cols = np.tile(np.asarray(EDITED_COLOR if not detected else DETECTED_COLOR),
                           (int(sel.sum()), 1))
            if detected and by_conf:
                cols = confidence_colors(lms.confidence[sel])
            cols[~enabled[sel]] = DISABLED_COLOR
            pc = ps.register_point_cloud(name, pos[sel], radius=LANDMARK_RADIUS, color=cols[0])
            pc.add_color_quantity("state", cols, enabled=True)
            sizes = (confidence_sizes(lms.confidence[sel]) if detected and by_conf
                     else np.full(int(sel.sum()), 0.35))
            # Radius quantities are world lengths (not scaled by the point radius).
            pc.add_scalar_quantity("radius", sizes * LANDMARK_RADIUS * ps.get_length_scale())
            pc.set_point_radius_quantity("radius", autoscale=False)
        if lms.outlier.any():
            pc = ps.register_point_cloud(LMK_OUTLIERS, pos[lms.outlier],
                                         radius=2.0 * LANDMARK_RADIUS, color=OUTLIER_COLOR)
            pc.set_transparency(0.6)
        if selected is not None and 0 <= selected < len(pos):
            ps.register_point_cloud(LMK_SELECTED, pos[selected:selected + 1],
                                    radius=1.2 * LANDMARK_RADIUS, color=SELECTED_COLOR)

    # --- the scan's frame ---------------------------------------------------------------
    def set_frame_arrows(self, arrows: FrameArrows | None) -> None:
        """The up (green) and front (blue) arrows: where the studio thinks the top of the
        head and the face are. None: no arrows."""
        for name in (FRAME_UP, FRAME_FRONT):
            if ps.has_point_cloud(name):
                ps.remove_point_cloud(name)
        if arrows is None or not self.style.show_frame:
            return
        for name, base, vec, color in ((FRAME_UP, arrows.up_base, arrows.up, UP_COLOR),
                                       (FRAME_FRONT, arrows.front_base, arrows.front,
                                        FRONT_COLOR)):
            pc = ps.register_point_cloud(name, np.asarray(base, np.float64)[None],
                                         radius=0.004, color=color)
            pc.add_vector_quantity("direction", np.asarray(vec, np.float64)[None],
                                   vectortype="ambient", enabled=True, color=color,
                                   radius=0.012)

    # --- orbit cameras ------------------------------------------------------------------
    def set_cameras(self, cameras: object, version: int) -> None:
        """One Polyscope camera view per orbit view (disabled views grey), in a group."""
        if version == self._views_version:
            return
        self._views_version = version
        i = 0
        while ps.has_camera_view(view_name(i)):  # also views left by an earlier SceneSync
            ps.remove_camera_view(view_name(i))
            i += 1
        ps.remove_group(CAMERA_GROUP, error_if_absent=False)
        group = ps.create_group(CAMERA_GROUP)
        group.set_hide_descendants_from_structure_lists(True)
        group.set_show_child_details(False)
        eyes = np.asarray(cameras.camera_positions())  # type: ignore[attr-defined]
        enabled = np.asarray(cameras.enabled, bool)  # type: ignore[attr-defined]
        fov = float(cameras.fov_deg)  # type: ignore[attr-defined]
        for i, eye in enumerate(eyes):
            params = camera_parameters(eye, np.zeros(3), fov)
            cv = ps.register_camera_view(
                view_name(i), params, widget_color=(0.2, 0.7, 0.3) if enabled[i]
                else DISABLED_COLOR, widget_focal_length=CAMERA_WIDGET_SIZE,
                widget_thickness=0.003)
            cv.add_to_group(group)
        self._group = group
        group.set_enabled(self.style.show_cameras)
        self._hide_looked_through()
        if self.scan_bounds is not None:  # frusta never change what "Reset View" frames
            set_scene_extents(*self.scan_bounds)

    def set_looked_through(self, view: int | None) -> None:
        """The view the user looks through: its own frustum would sit in front of the
        camera, so it is hidden (the others keep their display)."""
        self.looked_through = view
        self._hide_looked_through()

    def _hide_looked_through(self) -> None:
        i = 0
        while ps.has_camera_view(view_name(i)):
            ps.get_camera_view(view_name(i)).set_enabled(i != self.looked_through)
            i += 1

    # --- per-view images ------------------------------------------------------------------
    def show_images(self, images: dict[str, np.ndarray]) -> list[str]:
        """The per-view residual images, side by side in one colour image shown in one ImGui
        window (``RESIDUAL_WINDOW``); signed maps get robust symmetric limits. Returns a
        caption per tile."""
        grid, captions = residual_grid(images)
        ps.add_color_image_quantity(RESIDUAL_IMAGE, grid, enabled=True,
                                    show_in_imgui_window=True, image_origin="upper_left")
        if self.residual_shape is None:  # first time: place it beside the studio panel
            self.residual_place_frames = 3
        self.residual_shape = grid.shape[:2]
        self.residual_captions = captions
        return captions


def scene_bounds(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) corners of the bounding box of the head among the scan's canonical
    vertices (``geometry.frame.in_head_box``): what "Frame the head" and Reset View frame."""
    v = np.asarray(vertices, np.float64)
    v = v[in_head_box(v)]
    return v.min(0), v.max(0)


def set_scene_extents(low: np.ndarray, high: np.ndarray) -> None:
    """Make Polyscope's scene extents (what Reset View frames, what sizes widgets) the scan's
    box, whatever else is registered (camera frusta, landmark spheres)."""
    ps.set_automatically_compute_scene_extents(False)
    ps.set_bounding_box(low, high)
    ps.set_length_scale(float(np.linalg.norm(np.asarray(high) - np.asarray(low))))


def view_name(i: int) -> str:
    return f"view {i:02d}"


def camera_parameters(eye: np.ndarray, target: np.ndarray, fov_deg: float,
                      aspect: float = 1.0) -> ps.CameraParameters:
    """Polyscope camera parameters for a camera at ``eye`` looking at ``target``, +y up."""
    look = np.asarray(target, np.float64) - np.asarray(eye, np.float64)
    look /= np.linalg.norm(look)
    up = np.array([0.0, 1.0, 0.0])
    if abs(look @ up) > 0.999:  # straight up/down: any perpendicular up will do
        up = np.array([0.0, 0.0, 1.0])
    return ps.CameraParameters(
        ps.CameraIntrinsics(fov_vertical_deg=fov_deg, aspect=aspect),
        ps.CameraExtrinsics(root=np.asarray(eye, np.float64), look_dir=look, up_dir=up),
    )
