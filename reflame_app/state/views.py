"""Orbit-view panel: layout parameters, per-view enable flags, the view looked through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from reflame_core.render.cameras import OrbitCameras

LAYOUT_KEYS = ("num_views", "azimuth_range", "elevations", "distance", "fov_deg", "resolution")


@dataclass
class ViewsPanelState:
    """The orbit cameras the user edits, which view is looked through, and a ``version``
    that increases on every change so the scene and the fit engine pick changes up.

    Changing the layout keeps the user's enable flags where it can: each new view inherits
    the flag of the nearest old one (``OrbitCameras.rebuilt``).
    """

    cameras: OrbitCameras = field(default_factory=OrbitCameras)
    selected: int | None = None
    version: int = 0

    @property
    def num_total(self) -> int:
        return self.cameras.num_total

    @property
    def enabled(self) -> np.ndarray:
        """(N,) bool copy of the per-view flags."""
        return self.cameras.enabled.copy()

    def set_layout(self, *, num_views: int | None = None, azimuth_range: float | None = None,
                   elevations: Sequence[float] | None = None,
                   resolution: int | None = None) -> None:
        """Change the orbit layout; raises ValueError on an impossible layout."""
        if num_views is not None and num_views < 1:
            raise ValueError(f"number of views must be >= 1, got {num_views}")
        if resolution is not None and resolution < 16:
            raise ValueError(f"resolution must be >= 16 pixels, got {resolution}")
        if elevations is not None and len(elevations) == 0:
            raise ValueError("at least one elevation ring is needed")
        other = {} if resolution is None else {"resolution": int(resolution)}
        new = self.cameras.rebuilt(num_views=num_views, azimuth_range=azimuth_range,
                                   elevations=elevations, **other)
        if self.layout_of(new) == self.layout_of(self.cameras):
            return
        self.cameras = new
        if self.selected is not None and self.selected >= new.num_total:
            self.selected = None
        self.version += 1

    @staticmethod
    def layout_of(cams: OrbitCameras) -> dict:
        """The ``[cameras]`` config table values of ``cams``."""
        return {"num_views": cams.num_views, "azimuth_range": cams.azimuth_range,
                "elevations": list(cams.elevations), "distance": cams.distance,
                "fov_deg": cams.fov_deg, "resolution": cams.resolution}

    def set_enabled(self, view: int, on: bool) -> None:
        if bool(self.cameras.enabled[view]) == on:
            return
        self.cameras.set_enabled(view, on)
        self.version += 1

    def set_all_enabled(self, on: bool) -> None:
        self.cameras.enabled[:] = on
        self.version += 1

    def label(self, view: int) -> str:
        cams = self.cameras
        return (f"view {view:2d}  az {float(cams.azimuths[view]):+6.1f}  "
                f"el {float(cams.elevations_per_view[view]):+5.1f}")

    def look_through(self, view: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(eye (3,), target (3,), vertical fov degrees) of a view in the canonical frame;
        the orbit cameras look at the origin. Also selects the view."""
        if not 0 <= view < self.num_total:
            raise IndexError(f"view {view} outside 0..{self.num_total - 1}")
        self.selected = view
        eye = np.asarray(self.cameras.camera_positions()[view], np.float64)
        return eye, np.zeros(3), float(self.cameras.fov_deg)


@dataclass(frozen=True)
class DockLayout:
    """Where the studio panel sits (docked at the right edge) and which part of the window is
    left for the 3D view (between Polyscope's own panel on the left and the dock)."""

    window_w: float
    window_h: float
    dock_w: float = 440.0
    left_w: float = 310.0  # Polyscope's structure panel

    @property
    def dock_pos(self) -> tuple[float, float]:
        return max(0.0, self.window_w - self.dock_w), 0.0

    @property
    def dock_size(self) -> tuple[float, float]:
        return min(self.dock_w, self.window_w), self.window_h

    @property
    def free_x(self) -> tuple[float, float]:
        """(left, right) pixel range of the window not covered by panels."""
        left = min(self.left_w, self.window_w / 3)
        right = max(left + 1.0, self.window_w - self.dock_w)
        return left, right

    def side_window_pos(self, height: float) -> tuple[float, float]:
        """Top-left of a window of ``height`` placed beside the dock, at the bottom of the
        window (the residual images: below the framed head rather than over it)."""
        x = max(0.0, self.window_w - self.dock_w - self.side_window_size[0] - 6)
        return x, max(0.0, self.window_h - height - 6)

    @property
    def side_window_size(self) -> tuple[float, float]:
        left, right = self.free_x
        return max(200.0, min(560.0, right - left - 12)), 260.0


def frame_box(low: np.ndarray, high: np.ndarray, fov_deg: float, width: float, height: float,
              free_left: float, free_right: float, margin: float = 1.1
              ) -> tuple[np.ndarray, np.ndarray]:
    """(eye, target) of a front view (+z towards the face, +y up) of the box that shows all
    of it inside the pixel columns free_left..free_right of a width x height window, centred
    there. The camera looks along -z; the vertical field of view is ``fov_deg``."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    center = (low + high) / 2
    half = (high - low) / 2
    tan_v = np.tan(np.radians(fov_deg) / 2)
    tan_h = tan_v * width / height
    free_frac = max(free_right - free_left, 1.0) / width
    # Distance from the box's front face so its x and y half-extents fit.
    dist = margin * max(half[0] / (tan_h * free_frac), half[1] / tan_v) + half[2]
    ndc = (free_left + free_right) / width - 1.0  # where the centre should appear, -1..1
    shift = np.array([-ndc * dist * tan_h, 0.0, 0.0])
    target = center + shift
    return target + np.array([0.0, 0.0, dist]), target


def focus_view(point: np.ndarray, centre: np.ndarray, size: float, fov_deg: float,
               width: float, height: float, free_left: float, free_right: float,
               span: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(eye, target) of a view of ``point`` (a landmark) from outside the head: from the
    head's ``centre`` out through the point, leaning to the front (+z), close enough that
    ``span`` x ``size`` fills the window's height, the point centred in the free columns
    free_left..free_right (+y stays up on screen)."""
    p, c = np.asarray(point, np.float64), np.asarray(centre, np.float64)
    out = p - c
    n = np.linalg.norm(out)
    out = out / n if n > 1e-9 else np.zeros(3)
    d = out + np.array([0.0, 0.0, 1.0])
    d = d / np.linalg.norm(d) if np.linalg.norm(d) > 1e-9 else np.array([0.0, 0.0, 1.0])
    tan_v = np.tan(np.radians(fov_deg) / 2)
    dist = span * size / 2 / tan_v
    right = np.cross(np.array([0.0, 1.0, 0.0]), d)  # camera right for a view along -d
    right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-9 else np.array(
        [1.0, 0.0, 0.0])
    ndc = (free_left + free_right) / width - 1.0
    target = p - right * ndc * dist * tan_v * width / height
    return target + d * dist, target
