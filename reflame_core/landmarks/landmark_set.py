"""``LandmarkSet``: facial landmarks as points on the scan surface, with the editing model.

Each landmark is a face id + barycentric coordinates on the scan mesh, so it stays on the
surface whatever frame the scan is drawn in. The GUI's landmark editor and the fitter both use
this one object: the editor through the edit operations (each undoable), the fitter through
``positions`` / ``enabled_mask`` / ``weights``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reflame_core.landmarks.definitions import GROUPS, NUM_IBUG, landmark_definitions
from reflame_core.landmarks.editing import EditHistory

PROVENANCES = ("detected", "edited")
UNPLACED = -1  # face id of a landmark no detector found and nobody placed yet


@dataclass
class _EditableState:
    face_idx: np.ndarray  # (N,) int64
    bary: np.ndarray  # (N,3) float64
    enabled: np.ndarray  # (N,) bool
    weight: np.ndarray  # (N,) float64
    provenance: list[str]
    group_weights: dict[str, float]


def _check_bary(bary: np.ndarray) -> np.ndarray:
    b = np.asarray(bary, np.float64).reshape(3)
    if not np.all(np.isfinite(b)) or b.min() < -1e-4 or abs(b.sum() - 1.0) > 1e-4:
        raise ValueError(f"barycentric coordinates must be >= 0 and sum to 1, got {b.tolist()}")
    b = np.clip(b, 0.0, None)
    return b / b.sum()


@dataclass
class LandmarkSet:
    """N landmarks (the 68 iBUG ones, in iBUG order, then optional extras) on a scan.

    Attributes:
        names: (N,) landmark names from ``resources/landmarks_ibug68.json``.
        num_faces: face count of the scan the ids refer to (checked on load and edit).
        face_idx: (N,) int64 scan face per landmark; ``UNPLACED`` (-1) if not found.
        bary: (N,3) float64 barycentric coordinates on that face.
        confidence: (N,) float64 in [0,1]; detector agreement (1 for hand-placed points).
        provenance: (N,) "detected" or "edited".
        enabled: (N,) bool; disabled landmarks are ignored by the fitter.
        weight: (N,) float64 per-landmark weight (>= 0).
        group_weights: weight per group (contour, brows, nose, eyes, lips, ears).
        detected_face_idx, detected_bary: where the detector put each landmark, for reset.
    """

    names: tuple[str, ...]
    num_faces: int
    face_idx: np.ndarray
    bary: np.ndarray
    confidence: np.ndarray
    provenance: list[str] = None  # type: ignore[assignment]
    enabled: np.ndarray = None  # type: ignore[assignment]
    weight: np.ndarray = None  # type: ignore[assignment]
    group_weights: dict[str, float] = None  # type: ignore[assignment]
    detected_face_idx: np.ndarray = None  # type: ignore[assignment]
    detected_bary: np.ndarray = None  # type: ignore[assignment]
    _history: EditHistory = field(default_factory=EditHistory, repr=False, compare=False)

    def __post_init__(self) -> None:
        defs = landmark_definitions()
        self.names = tuple(self.names)
        if self.names[:NUM_IBUG] != defs.ibug_names:
            pairs = enumerate(zip(self.names, defs.ibug_names, strict=False))
            wrong = next((i for i, (a, b) in pairs if a != b), min(len(self.names), NUM_IBUG))
            found = repr(self.names[wrong]) if wrong < len(self.names) else "missing"
            raise ValueError(f"landmark {wrong} is {found}, expected {defs.ibug_names[wrong]!r}"
                             " (the 68 iBUG landmarks come first, in iBUG order)")
        unknown = [n for n in self.names[NUM_IBUG:] if n not in defs.extra_names]
        if unknown or len(set(self.names)) != len(self.names):
            raise ValueError(f"unknown or repeated extra landmarks: {unknown or self.names}")
        n = len(self.names)
        self.face_idx = np.asarray(self.face_idx, np.int64).reshape(n)
        self.bary = np.asarray(self.bary, np.float64).reshape(n, 3)
        self.confidence = np.asarray(self.confidence, np.float64).reshape(n)
        if self.provenance is None:
            self.provenance = ["detected"] * n
        self.provenance = list(self.provenance)
        self.enabled = (
            self.face_idx != UNPLACED if self.enabled is None else np.asarray(self.enabled, bool)
        ).reshape(n).copy()
        self.weight = np.ones(n) if self.weight is None else np.asarray(self.weight, np.float64)
        gw = {g: 1.0 for g in GROUPS}
        gw.update(self.group_weights or {})
        self.group_weights = gw
        if self.detected_face_idx is None:
            self.detected_face_idx = self.face_idx.copy()
            self.detected_bary = self.bary.copy()
        self.detected_face_idx = np.asarray(self.detected_face_idx, np.int64).reshape(n)
        self.detected_bary = np.asarray(self.detected_bary, np.float64).reshape(n, 3)
        self._validate()

    def _validate(self) -> None:
        placed = self.face_idx != UNPLACED
        if np.any(self.face_idx[placed] < 0) or np.any(self.face_idx >= self.num_faces):
            raise ValueError(f"face ids must be in 0..{self.num_faces - 1} (or -1 = unplaced)")
        if set(self.provenance) - set(PROVENANCES):
            raise ValueError(f"provenance must be one of {PROVENANCES}")
        if np.any(self.weight < 0) or any(w < 0 for w in self.group_weights.values()):
            raise ValueError("weights must be >= 0")
        if set(self.group_weights) - set(GROUPS):
            raise ValueError(f"group weights must be for groups {GROUPS}")

    # ---- queries -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    @property
    def groups(self) -> tuple[str, ...]:
        defs = landmark_definitions()
        return tuple(defs.group_of(n) for n in self.names)

    @property
    def ibug_indices(self) -> np.ndarray:
        """(N,) int64 iBUG index 0..67 per landmark, -1 for extras."""
        idx = np.full(len(self), -1, np.int64)
        idx[:NUM_IBUG] = np.arange(NUM_IBUG)
        return idx

    @property
    def placed_mask(self) -> np.ndarray:
        """(N,) bool: the landmark has a surface point."""
        return self.face_idx != UNPLACED

    @property
    def enabled_mask(self) -> np.ndarray:
        """(N,) bool: placed and enabled, i.e. used by the fitter."""
        return self.enabled & self.placed_mask

    @property
    def weights(self) -> np.ndarray:
        """(N,) float32 effective weight: weight x group weight, 0 where not enabled."""
        gw = np.array([self.group_weights[g] for g in self.groups])
        return (self.weight * gw * self.enabled_mask).astype(np.float32)

    def index(self, key: int | str) -> int:
        """Landmark position in this set from an index or a name."""
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"no landmark named {key!r}")
            return self.names.index(key)
        if not 0 <= int(key) < len(self):
            raise IndexError(f"landmark index {key} outside 0..{len(self) - 1}")
        return int(key)

    def positions(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(N,3) float64 points on the mesh (vertices (V,3), faces (F,3)); NaN if unplaced."""
        faces = np.asarray(faces)
        if faces.shape[0] != self.num_faces:
            raise ValueError(
                f"landmarks refer to a mesh of {self.num_faces} faces, got {len(faces)}"
            )
        tri = np.asarray(vertices, np.float64)[faces[np.maximum(self.face_idx, 0)]]
        pos = np.einsum("nk,nkd->nd", self.bary, tri)
        pos[~self.placed_mask] = np.nan
        return pos

    def copy(self) -> LandmarkSet:
        """An independent copy (fresh, empty edit history)."""
        s = self._state()
        return LandmarkSet(
            names=self.names, num_faces=self.num_faces, face_idx=s.face_idx.copy(),
            bary=s.bary.copy(), confidence=self.confidence.copy(), provenance=list(s.provenance),
            enabled=s.enabled.copy(), weight=s.weight.copy(), group_weights=dict(s.group_weights),
            detected_face_idx=self.detected_face_idx.copy(),
            detected_bary=self.detected_bary.copy(),
        )

    # ---- edits (each one undoable) -------------------------------------------------------
    def _state(self) -> _EditableState:
        return _EditableState(
            self.face_idx, self.bary, self.enabled, self.weight, self.provenance, self.group_weights
        )

    def _restore(self, s: _EditableState) -> None:
        self.face_idx, self.bary, self.enabled = s.face_idx, s.bary, s.enabled
        self.weight, self.provenance, self.group_weights = s.weight, s.provenance, s.group_weights

    def _begin_edit(self) -> None:
        self._history.record(self._state())

    def move(self, key: int | str, face_id: int, bary: np.ndarray) -> None:
        """Put a landmark on scan face ``face_id`` at barycentric ``bary`` (3,); enables it."""
        i = self.index(key)
        if not 0 <= int(face_id) < self.num_faces:
            raise ValueError(f"face id {face_id} outside 0..{self.num_faces - 1}")
        b = _check_bary(bary)
        self._begin_edit()
        self.face_idx[i], self.bary[i] = int(face_id), b
        self.provenance[i] = "edited"
        self.enabled[i] = True

    def set_enabled(self, key: int | str, enabled: bool) -> None:
        i = self.index(key)
        if enabled and self.face_idx[i] == UNPLACED:
            raise ValueError(f"landmark {self.names[i]!r} has no surface point yet: move it first")
        self._begin_edit()
        self.enabled[i] = bool(enabled)

    def reset(self, key: int | str) -> None:
        """Back to the detector's point (disabled if the detector did not find it)."""
        i = self.index(key)
        self._begin_edit()
        self.face_idx[i], self.bary[i] = self.detected_face_idx[i], self.detected_bary[i]
        self.provenance[i] = "detected"
        self.enabled[i] = self.face_idx[i] != UNPLACED

    def set_weight(self, key: int | str, weight: float) -> None:
        i = self.index(key)
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self._begin_edit()
        self.weight[i] = float(weight)

    def set_group_weight(self, group: str, weight: float) -> None:
        if group not in GROUPS:
            raise KeyError(f"unknown group {group!r}; groups are {GROUPS}")
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self._begin_edit()
        self.group_weights[group] = float(weight)

    @property
    def can_undo(self) -> bool:
        return self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    def undo(self) -> None:
        self._restore(self._history.undo(self._state()))

    def redo(self) -> None:
        self._restore(self._history.redo(self._state()))
