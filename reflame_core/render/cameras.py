"""Orbit cameras around the canonical head frame (OpenGL conventions).

Conventions: world +y is up and the face looks towards +z. Each camera looks at the origin from
``distance`` units away; in camera space it looks down -z with +y up (OpenGL). Azimuth 0 sits on
+z (looks at the face); positive azimuth rotates the camera about +y towards +x. Elevation is
positive above the horizon. Clip space follows OpenGL: ``clip = P @ V @ [x,y,z,1]``, NDC in
[-1,1]^3, ``clip.w`` = camera-space depth (positive in front of the camera).

Pixel coordinates (``project``, and the renderer's images): x to the right, y down, row 0 = top,
the centre of pixel (row r, column c) at (c+0.5, r+0.5).

Matrices are numpy float64; ``project`` accepts numpy arrays or torch tensors (any device,
differentiable) and answers in the same kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class OrbitCameras:
    """A set of ``num_total = num_views * len(elevations)`` cameras on rings around the origin.

    Views are ordered ring by ring (one ring per elevation, in the given order); inside a ring
    the azimuths run evenly from ``-azimuth_range`` to ``+azimuth_range`` degrees (a single view
    per ring sits at azimuth 0).

    Attributes:
        num_views: views per elevation ring.
        azimuth_range: half-range in degrees (views span ±azimuth_range).
        elevations: ring elevations in degrees, each in (-89, 89).
        distance: camera distance to the origin, in canonical-frame units.
        fov_deg: full vertical (= horizontal; images are square) field of view, degrees.
        resolution: image width = height in pixels.
        near, far: clip planes in camera-space depth units.
        enabled: (num_total,) bool; which views take part in fitting. Defaults to all True.
    """

    num_views: int = 40
    azimuth_range: float = 150.0
    elevations: tuple[float, ...] = (0.0,)
    distance: float = 4.5
    fov_deg: float = 40.0
    resolution: int = 448
    near: float = 0.1
    far: float = 20.0
    enabled: np.ndarray | None = field(default=None)
    # (layout key, read-only world -> clip matrices): the fitting loop projects every step.
    _mvp_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.elevations = tuple(float(e) for e in self.elevations)
        if self.num_views < 1 or not self.elevations:
            raise ValueError("OrbitCameras needs num_views >= 1 and at least one elevation")
        if any(abs(e) >= 89.0 for e in self.elevations):
            raise ValueError(f"elevations must lie in (-89, 89) degrees, got {self.elevations}")
        if not (0.0 < self.fov_deg < 179.0) or self.distance <= 0 or self.resolution < 1:
            raise ValueError("OrbitCameras needs 0 < fov_deg < 179, distance > 0, resolution >= 1")
        if not (0.0 < self.near < self.far):
            raise ValueError("OrbitCameras needs 0 < near < far")
        if self.enabled is None:
            self.enabled = np.ones(self.num_total, dtype=bool)
        else:
            self.enabled = np.asarray(self.enabled, dtype=bool).copy()
            if self.enabled.shape != (self.num_total,):
                raise ValueError(
                    f"enabled has shape {self.enabled.shape}, expected ({self.num_total},)"
                )

    # ---- layout -------------------------------------------------------------------------
    @property
    def num_total(self) -> int:
        return self.num_views * len(self.elevations)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return (self.resolution, self.resolution)

    @property
    def ring_azimuths(self) -> np.ndarray:
        """(num_views,) azimuths of one ring, degrees."""
        if self.num_views == 1:
            return np.zeros(1)
        return np.linspace(-self.azimuth_range, self.azimuth_range, self.num_views)

    @property
    def azimuths(self) -> np.ndarray:
        """(num_total,) azimuth of each view, degrees."""
        return np.tile(self.ring_azimuths, len(self.elevations))

    @property
    def elevations_per_view(self) -> np.ndarray:
        """(num_total,) elevation of each view, degrees."""
        return np.repeat(np.asarray(self.elevations, dtype=np.float64), self.num_views)

    def enabled_indices(self) -> list[int]:
        """Indices of the enabled views, ascending."""
        return [int(i) for i in np.flatnonzero(self.enabled)]

    def set_enabled(self, view: int, flag: bool) -> None:
        """Enable or disable one view."""
        if not 0 <= view < self.num_total:
            raise IndexError(f"view {view} out of range 0..{self.num_total - 1}")
        self.enabled[view] = bool(flag)

    def rebuilt(
        self,
        *,
        num_views: int | None = None,
        azimuth_range: float | None = None,
        elevations: Sequence[float] | None = None,
        **other: float,
    ) -> OrbitCameras:
        """A copy with a new layout; each new view inherits the enabled flag of the nearest old
        view (angular distance on the sphere of directions), so disabling e.g. the back views
        survives adding views or rings. ``other``: distance, fov_deg, resolution, near, far.
        """
        new = replace(
            self,
            num_views=self.num_views if num_views is None else int(num_views),
            azimuth_range=self.azimuth_range if azimuth_range is None else float(azimuth_range),
            elevations=self.elevations if elevations is None else tuple(elevations),
            enabled=None,
            **other,
        )
        old_dirs = _directions(self.azimuths, self.elevations_per_view)
        new_dirs = _directions(new.azimuths, new.elevations_per_view)
        nearest = np.argmax(new_dirs @ old_dirs.T, axis=1)
        new.enabled = self.enabled[nearest].copy()
        return new

    # ---- matrices ------------------------------------------------------------------------
    def camera_positions(self) -> np.ndarray:
        """(num_total,3) camera centres in the canonical frame."""
        return self.distance * _directions(self.azimuths, self.elevations_per_view)

    def view_matrices(self) -> np.ndarray:
        """(num_total,4,4) world -> camera (look-at the origin, +y up)."""
        eye = self.camera_positions()
        back = eye / np.linalg.norm(eye, axis=1, keepdims=True)  # camera +z axis
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
        right /= np.linalg.norm(right, axis=1, keepdims=True)
        up = np.cross(back, right)
        rot = np.stack([right, up, back], axis=1)  # rows = camera axes in world coordinates
        view = np.zeros((self.num_total, 4, 4))
        view[:, :3, :3] = rot
        view[:, :3, 3] = -np.einsum("nij,nj->ni", rot, eye)
        view[:, 3, 3] = 1.0
        return view

    def projection_matrix(self) -> np.ndarray:
        """(4,4) OpenGL perspective projection (square aspect)."""
        f = 1.0 / math.tan(math.radians(self.fov_deg) / 2.0)
        n, fa = self.near, self.far
        return np.array(
            [
                [f, 0.0, 0.0, 0.0],
                [0.0, f, 0.0, 0.0],
                [0.0, 0.0, (fa + n) / (n - fa), 2.0 * fa * n / (n - fa)],
                [0.0, 0.0, -1.0, 0.0],
            ]
        )

    def mvp(self) -> np.ndarray:
        """(num_total,4,4) world -> clip (read-only; computed again only when the layout
        changed)."""
        key = (self.num_views, self.azimuth_range, self.elevations, self.distance,
               self.fov_deg, self.near, self.far)
        if self._mvp_cache is None or self._mvp_cache[0] != key:
            m = self.projection_matrix()[None] @ self.view_matrices()
            m.flags.writeable = False
            self._mvp_cache = (key, m)
        return self._mvp_cache[1]

    def project(self, points: ArrayLike, views: Sequence[int] | None = None):
        """Project world points into every (or the given) view.

        Args:
            points: (P,3) numpy array or torch tensor (gradients flow through a tensor).
            views: view indices; default all ``num_total`` views.
        Returns:
            pixels (N,P,2) [x right, y down, pixel units, pixel centres at +0.5] and depth (N,P)
            camera-space depth; numpy in -> numpy out, tensor in -> tensor out (same device,
            dtype).
        """
        mvp = self.mvp() if views is None else self.mvp()[np.asarray(list(views), dtype=int)]
        if isinstance(points, torch.Tensor):
            m = device_matrices(mvp, points.dtype, points.device)
            clip = torch.einsum("nij,pj->npi", m[:, :, :3], points) + m[:, None, :, 3]
        else:
            pts = np.asarray(points, dtype=np.float64)
            clip = np.einsum("nij,pj->npi", mvp[:, :, :3], pts) + mvp[:, None, :, 3]
        w = clip[..., 3]
        x = (clip[..., 0] / w * 0.5 + 0.5) * self.resolution
        y = (0.5 - clip[..., 1] / w * 0.5) * self.resolution
        pix = torch.stack([x, y], -1) if isinstance(clip, torch.Tensor) else np.stack([x, y], -1)
        return pix, w


# (device, dtype) -> (matrices as last copied, their device copy).
_DEVICE_MATRICES: dict[tuple, tuple[np.ndarray, torch.Tensor]] = {}


def device_matrices(matrices: np.ndarray, dtype: torch.dtype, device) -> torch.Tensor:
    """``matrices`` as a tensor on ``device``, copied only when they changed since the last
    call for this device and dtype: a copy from host memory makes the host wait for the
    device, and the fitting loop projects every iteration with the same cameras."""
    key = (str(device), dtype, matrices.shape)
    cached = _DEVICE_MATRICES.get(key)
    if cached is not None and np.array_equal(cached[0], matrices):
        return cached[1]
    tensor = torch.as_tensor(matrices, dtype=dtype, device=device)
    _DEVICE_MATRICES[key] = (matrices.copy(), tensor)
    return tensor


def _directions(azimuth_deg: np.ndarray, elevation_deg: np.ndarray) -> np.ndarray:
    """(N,3) unit vectors from the origin towards cameras at the given angles (degrees)."""
    az = np.radians(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.radians(np.asarray(elevation_deg, dtype=np.float64))
    return np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)
