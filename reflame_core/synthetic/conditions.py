"""Shape, pose and units conditions: how a head differs from the generator's narrow default.

Each condition is ``(head, rng) -> head``, deterministic for the generator's state, and goes
through ``truth.move_vertices`` so the truth stays exact. Lengths are fractions of the head
height (template frame) unless a name says otherwise.
"""

from __future__ import annotations

import numpy as np

from reflame_core.geometry.similarity import Similarity
from reflame_core.synthetic.head import SyntheticHead, gaussian_bumps
from reflame_core.synthetic.truth import canonical_vertices, move_vertices

# Per-axis proportions: each of width, height, depth scaled by up to this fraction.
MAX_PROPORTION = 0.15
# Multi-scale shape: bump radii (fraction of head height), bumps per scale, and the largest
# displacement of the whole field (drawn between these fractions of head height).
SHAPE_RADII = (0.35, 0.18, 0.08)
SHAPE_BUMPS = (4, 8, 16)
SHAPE_MAX_DISPLACEMENT = (0.06, 0.10)
# Pose: rotation magnitude about a random axis, degrees. Small angles are what the default
# generator already makes (up to 10), so the condition draws from 10 to 25.
ROTATION_DEG = (10.0, 25.0)
# Units: the scan's coordinates are scaled by a factor log-uniform in this range.
UNITS_RANGE = (0.01, 1000.0)


def rotation_matrix(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """(3,3) rotation by ``angle_deg`` degrees about ``axis`` (3,), Rodrigues' formula."""
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.deg2rad(angle_deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def scale_axes(head: SyntheticHead, factors: np.ndarray) -> SyntheticHead:
    """Scale the head's width, height and depth (template x, y, z) by ``factors`` (3,) about
    the deformed template's centre."""
    centre = head.deformed_vertices.mean(0)
    f = np.asarray(factors, np.float64)
    return move_vertices(head, lambda p: centre + (p - centre) * f)


def proportions(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Per-axis proportions: each axis scaled by 1 ± up to ``MAX_PROPORTION``."""
    return scale_axes(head, 1 + rng.uniform(-MAX_PROPORTION, MAX_PROPORTION, 3))


def shape(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Multi-scale shape change: Gaussian bumps at three radii (skull to nose size), each
    scale's share of the displacement proportional to its radius so fine bumps stay gentle
    (no folds); the whole field peaks at 6-10% of head height on the head."""
    v = canonical_vertices(head)
    height = float(np.ptp(head.deformed_vertices[:, 1]))
    parts = []
    for radius, n in zip(SHAPE_RADII, SHAPE_BUMPS, strict=True):
        centres = v[rng.choice(len(v), n, replace=False)]
        sigmas = radius * height * rng.uniform(0.7, 1.3, n)
        dirs = rng.normal(size=(n, 3))
        dirs *= (radius / sum(SHAPE_RADII) / np.linalg.norm(dirs, axis=1))[:, None]
        parts.append((centres, sigmas, dirs))
    centres, sigmas, dirs = (np.concatenate(x) for x in zip(*parts, strict=True))
    peak = np.linalg.norm(gaussian_bumps(v, centres, sigmas, dirs), axis=1).max()
    dirs *= rng.uniform(*SHAPE_MAX_DISPLACEMENT) * height / peak
    return move_vertices(head, lambda p: p + gaussian_bumps(p, centres, sigmas, dirs))


def set_pose(head: SyntheticHead, rotation: np.ndarray) -> SyntheticHead:
    """The scan re-posed with ``rotation`` (3,3) from the template frame, replacing the
    generator's own rotation (scale and translation kept)."""
    old = head.to_canonical.inverse()
    return move_vertices(head, lambda p: p, Similarity(old.scale, rotation, old.translation))


def rotation(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Head pose: 10-25 degrees about a random axis (yaw, pitch, roll and mixes)."""
    angle = rng.uniform(*ROTATION_DEG) * rng.choice([-1.0, 1.0])
    return set_pose(head, rotation_matrix(rng.normal(size=3), angle))


def scale_units(head: SyntheticHead, factor: float) -> SyntheticHead:
    """The scan's coordinates (and its translation) multiplied by ``factor``: a scan in other
    units. Relative errors (divided by ``truth.head_height``) do not change."""
    to_scan = Similarity(factor).compose(head.to_canonical.inverse())
    return move_vertices(head, lambda p: p, to_scan)


def units(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Units: coordinates scaled by a factor log-uniform in ``UNITS_RANGE`` (cm to km-ish)."""
    lo, hi = np.log10(UNITS_RANGE)
    return scale_units(head, float(10 ** rng.uniform(lo, hi)))
