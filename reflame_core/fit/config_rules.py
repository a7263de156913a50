"""Allowed ranges of the settings in ``resources/default.toml`` (the types come from the file
itself; see ``config._coerce``). A value out of range fails where it is set, naming the key,
instead of as a traceback or a silently wrong fit minutes later."""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Any

from reflame_core.fit.robust import KERNELS

AXES = ("+x", "-x", "+y", "-y", "+z", "-z")


def _range(lo: float | None, hi: float | None, *, lo_open: bool = False,
           hi_open: bool = False) -> Any:
    """A check for a finite number in [lo, hi] (bounds None = unbounded, open when asked)."""
    def check(value: Any) -> str | None:
        if not math.isfinite(value):
            return "must be a finite number"
        if lo is not None and (value <= lo if lo_open else value < lo):
            return f"must be {'>' if lo_open else '>='} {lo:g}"
        if hi is not None and (value >= hi if hi_open else value > hi):
            return f"must be {'<' if hi_open else '<='} {hi:g}"
        return None
    return check


def _axis(value: Any) -> str | None:
    return None if value in AXES else f"must be one of {' '.join(AXES)}"


def _kernel(value: Any) -> str | None:
    return None if value in KERNELS else f"must be one of {' '.join(KERNELS)}"


def _one_of(*allowed: str) -> Any:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {' '.join(allowed)}"
    return check


def _elevations(value: Any) -> str | None:
    if not value:
        return "must list at least one elevation"
    check = _range(-90.0, 90.0)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or check(v):
            return "must be a list of angles in -90..90 degrees"
    return None


COUNT = _range(1, None)          # a count that must do something
NON_NEGATIVE = _range(0.0, None)  # weights: 0 switches a term off
POSITIVE = _range(0.0, None, lo_open=True)

# Dotted-name patterns (fnmatch) -> check; the first matching pattern applies.
RULES: list[tuple[str, Any]] = [
    ("frame.up", _axis),
    ("frame.front", _axis),
    ("cameras.num_views", COUNT),
    ("cameras.azimuth_range", _range(0.0, 180.0)),
    ("cameras.elevations", _elevations),
    ("cameras.distance", POSITIVE),
    ("cameras.fov_deg", _range(0.0, 180.0, lo_open=True, hi_open=True)),
    ("cameras.resolution", _range(8, 8192)),
    ("landmarks.frontal_range", _range(0.0, 180.0)),
    ("landmarks.robust_kernel", _kernel),
    ("landmarks.robust_tuning", POSITIVE),
    ("landmarks.robust_scale_floor", _range(0.0, 1.0, lo_open=True)),
    ("landmarks.robust_scale_floor_certain", _range(0.0, 1.0, lo_open=True)),
    ("landmarks.outlier_weight", _range(0.0, 1.0)),
    ("landmarks.confidence_power", _range(1.0, 16.0)),
    ("landmarks.group_weights_*.*", NON_NEGATIVE),
    ("regions.*", NON_NEGATIVE),
    ("stages.eyeballs.shape", _one_of("socket", "sphere")),
    ("stages.*.steps", _range(0, None)),  # 0 steps: the stage only sets itself up
    ("stages.*.lr", POSITIVE),
    ("stages.*.lambda", POSITIVE),
    ("stages.*.lambda_end", POSITIVE),
    ("stages.*.lambda_phases", _range(1, None)),
    ("stages.*.lambda_steps", _range(1, None)),
    ("stages.*.w_*", NON_NEGATIVE),
    ("stages.*.max_distance", POSITIVE),
    ("stages.*.shape_support_distance", POSITIVE),
    ("stages.*.shape_unsupported_gain", NON_NEGATIVE),
    ("stages.*.certain_landmark_gain", NON_NEGATIVE),
    ("stages.*.min_normal_cos", _range(-1.0, 1.0)),
    ("stages.*.surface_samples", COUNT),
    ("stages.*.min_steps", _range(0, None)),
    ("stages.*.plateau_window", _range(0, None)),  # 0: no plateau detection
    ("stages.*.plateau_tolerance", NON_NEGATIVE),
    ("stages.affine.trim", _range(0.0, 1.0, hi_open=True)),
    ("stages.affine.max_change", _range(0.0, 1.0, lo_open=True, hi_open=True)),
    ("stages.jaw.min_deg", _range(-90.0, 90.0)),
    ("stages.jaw.max_deg", _range(-90.0, 90.0)),
    ("stages.jaw.min_turn", NON_NEGATIVE),
    ("stages.jaw.max_shift", NON_NEGATIVE),
    ("stages.jaw.min_gain", _range(0.0, 1.0, hi_open=True)),
    ("stages.jaw.trim", _range(0.0, 1.0, hi_open=True)),
    ("stages.lattice.control_points", _range(4, 12)),
    ("stages.lattice.smoothness", NON_NEGATIVE),
    ("stages.lattice.trim", _range(0.0, 1.0, hi_open=True)),
    ("stages.lattice.mean_confidence_power", _range(0.0, 16.0)),
    ("stages.eyeballs.socket_radius", _range(1.0, None, lo_open=True)),
    ("stages.eyeballs.max_surface_shift", POSITIVE),
    ("stages.eyeballs.max_surface_residual", POSITIVE),
    ("stages.texture.resolution", _range(16, 8192)),
    ("stages.texture.refine_steps", _range(0, None)),
]


def range_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for the setting ``name`` (dotted), or None when it is."""
    for pattern, check in RULES:
        if fnmatchcase(name, pattern):
            return check(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return None
