"""Clicking the scan: a click (press and release at about the same place, not on a panel)
becomes a ray from the viewer camera, cast against the scan only, so the FLAME overlay,
landmark spheres or camera frusta drawn in front never take the click."""

from __future__ import annotations

import math

import numpy as np

from reflame_core.geometry.ray_pick import RayHit, ray_mesh_hit

CLICK_MAX_MOVE_PX = 4.0  # more movement between press and release is a camera drag


class ClickGesture:
    """Feed it the mouse each frame; ``update`` returns the click position once per click."""

    def __init__(self, max_move: float = CLICK_MAX_MOVE_PX):
        self.max_move = max_move
        self._down: tuple[float, float] | None = None

    def update(self, pressed: bool, released: bool, pos: tuple[float, float],
               over_gui: bool) -> tuple[float, float] | None:
        if pressed:
            self._down = None if over_gui else (float(pos[0]), float(pos[1]))
        if released and self._down is not None:
            down, self._down = self._down, None
            if math.hypot(pos[0] - down[0], pos[1] - down[1]) <= self.max_move:
                return float(pos[0]), float(pos[1])
        return None


def pick_scan(vertices: np.ndarray, faces: np.ndarray, camera_position: np.ndarray,
              ray_direction: np.ndarray) -> RayHit | None:
    """Where the view ray from ``camera_position`` first meets the scan (None: it misses)."""
    return ray_mesh_hit(vertices, faces, camera_position, ray_direction)
