"""The scan's canonical frame as the studio holds it: one ``Similarity`` (scan -> canonical,
+y up, +z towards the face) that the scan's axes, an automatic orientation or the user's
corrections set, and the corrections themselves (quarter turns, flipping the front).

The frame is what everything canonical hangs on (the drawn scan, the orbit cameras,
detection, the fit); ``AppState.set_frame`` changes it and says what that costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reflame_core.geometry.frame import in_head_box
from reflame_core.geometry.similarity import Similarity

AXES = ("x", "y", "z")
# Where the frame came from: the config's (or file's) up/front axes, an automatic
# orientation, the user's corrections, or a saved session.
SOURCES = ("axes", "auto", "corrected", "session")
UP, FRONT = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])


def quarter_turn(axis: str, turns: int = 1) -> np.ndarray:
    """(3,3) rotation by ``turns`` x 90 degrees (right-handed) about canonical ``axis``,
    with exact integer entries, so that four turns give the identity exactly."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    i = AXES.index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    r = np.eye(3)
    for _ in range(int(turns) % 4):
        q = np.eye(3)
        q[[j, j, k, k], [j, k, j, k]] = (0.0, -1.0, 1.0, 0.0)
        r = q @ r
    return r


def turned(frame: Similarity, axis: str, turns: int = 1) -> Similarity:
    """``frame`` followed by ``turns`` quarter turns about the canonical ``axis`` through the
    canonical origin (the scan's centre): what the user sees turn is the scan itself."""
    return Similarity(1.0, quarter_turn(axis, turns)).compose(frame)


def front_flipped(frame: Similarity) -> Similarity:
    """``frame`` with the front reversed (half a turn about up): back of the head <-> face."""
    return turned(frame, "y", 2)


def scan_direction(frame: Similarity, canonical: np.ndarray) -> np.ndarray:
    """(3,) unit direction in the scan's own frame that ``frame`` turns to ``canonical``."""
    return frame.rotation.T @ np.asarray(canonical, np.float64)


def axis_name(direction: np.ndarray, tol: float = 1e-3) -> str:
    """"+x" ... "-z" for a direction along a scan axis, else its rounded components."""
    d = np.asarray(direction, np.float64)
    i = int(np.argmax(np.abs(d)))
    if abs(abs(d[i]) - 1.0) < tol:
        return f"{'+' if d[i] > 0 else '-'}{AXES[i]}"
    return "(" + ", ".join(f"{c:.2f}" for c in d) + ")"


@dataclass(frozen=True)
class FrameArrows:
    """The viewer's frame gizmo, canonical: an ``up`` arrow (3,) from ``up_base`` on top of
    the scan's box, a ``front`` arrow (3,) from ``front_base`` on its face side, so that
    neither hides in the head."""

    up_base: np.ndarray
    up: np.ndarray
    front_base: np.ndarray
    front: np.ndarray


def frame_arrows(vertices: np.ndarray, length: float = 0.3) -> FrameArrows:
    """Arrows out of the top of the head's box and out of its front (+z) side, centred on
    it, ``length`` x its largest side long (``vertices`` (V,3), canonical).

    The head's box: ``geometry.frame.in_head_box`` (the whole scan, or the head where the
    frame was set on the head at one end of a larger scan)."""
    v = np.asarray(vertices, np.float64)
    v = v[in_head_box(v)]
    lo, hi = v.min(0), v.max(0)
    centre, size = (lo + hi) / 2.0, float((hi - lo).max())
    return FrameArrows(np.array([centre[0], hi[1], centre[2]]), UP * length * size,
                       np.array([centre[0], centre[1], hi[2]]), FRONT * length * size)


@dataclass
class PendingFrame:
    """A frame change waiting for the user's yes: what it would discard or make stale."""

    frame: Similarity
    source: str
    costs: list[str]


class FrameState:
    """The current frame, where it came from, and a change waiting to be confirmed.

    ``version`` increases with every applied change (the viewer redraws the scan then).
    """

    def __init__(self) -> None:
        self.to_canonical: Similarity | None = None
        self.source = "axes"
        self.version = 0
        self.pending: PendingFrame | None = None
        # The landmarks were detected in an earlier frame: they stay on the scan surface,
        # but a detector that saw the head turned may have put them anywhere.
        self.landmarks_stale = False

    def set(self, frame: Similarity, source: str) -> None:
        if source not in SOURCES:
            raise ValueError(f"frame source must be one of {SOURCES}, got {source!r}")
        self.to_canonical, self.source = frame, source
        self.pending = None
        self.version += 1

    def describe(self) -> str:
        """"up +z, front -y (file axes)": the scan's own axes that became up and front."""
        f = self.to_canonical
        if f is None:
            return "no scan"
        label = {"axes": "scan axes", "auto": "found automatically",
                 "corrected": "corrected", "session": "from the session"}[self.source]
        return (f"up {axis_name(scan_direction(f, UP))}, front "
                f"{axis_name(scan_direction(f, FRONT))} ({label})")


def frame_to_dict(frame: Similarity, source: str) -> dict:
    return {**frame.to_dict(), "source": source}


def frame_from_dict(d: dict) -> tuple[Similarity, str]:
    """(frame, source) from ``frame_to_dict``'s form; raises ValueError if it is not a
    similarity (rotation not orthonormal with determinant 1, scale not positive)."""
    sim = Similarity.from_dict(d)
    r = sim.rotation
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise ValueError("frame rotation is not a rotation matrix")
    source = str(d.get("source", "session"))
    return sim, source if source in SOURCES else "session"
