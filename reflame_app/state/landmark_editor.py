"""Landmark editor panel: table rows, selection, click-to-move, enable/reset/undo/redo,
per-landmark and per-group weights, and what to look at first (least confident landmarks,
landmarks the fit contradicts). The edits themselves are LandmarkSet operations (so
undo/redo is the core's); this object adds selection, pick handling and change tracking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflame_app.state.manual_landmarks import (
    ManualPlacement,
    empty_landmarks,
    landmark_hint,
    placement_queue,
)
from reflame_core.fit.landmark_outliers import LandmarkOutlier
from reflame_core.landmarks.landmark_set import LandmarkSet

# Table orders: iBUG index, or least confident first (edited ones after the detected ones:
# the artist has seen them; unplaced ones last: nothing to check).
ORDERS = ("index", "confidence")


@dataclass(frozen=True)
class LandmarkRow:
    index: int
    name: str
    group: str
    confidence: float
    provenance: str
    enabled: bool
    placed: bool
    weight: float
    outlier_weight: float | None = None  # the fit's robust weight, when it is an outlier


@dataclass(frozen=True)
class LandmarkDisplay:
    """What the viewer draws of the M placed landmarks: positions (M,3) in the mesh's frame,
    edited / enabled / outlier (M,) bool, confidence (M,) in [0,1]."""

    positions: np.ndarray
    edited: np.ndarray
    enabled: np.ndarray
    confidence: np.ndarray
    outlier: np.ndarray


class LandmarkEditorState:
    """Holds the LandmarkSet being edited.

    ``version`` increases with every edit; ``take_changes()`` hands the fitter a copy once per
    batch of edits (the GUI thread never shares the live set with the fitting thread).
    """

    def __init__(self) -> None:
        self.landmarks: LandmarkSet | None = None
        self.selected: int | None = None
        self.placing = False
        self.version = 0
        self._sent_version = 0
        self.manual: ManualPlacement | None = None
        self.key_points_ready = False  # the five key points are placed: initialise the rest
        # What the table calls non-edited landmarks: "detected", or "estimated" when they
        # were initialised from five clicked key points.
        self.unedited_label = "detected"
        self.order = "index"
        self.max_confidence = 1.0  # the table lists landmarks up to this confidence
        self.focus_request: int | None = None  # a landmark the viewer should turn to
        self._outliers: list[LandmarkOutlier] = []
        self.outliers_version = 0

    def set_landmarks(self, lms: LandmarkSet | None) -> None:
        self.landmarks = lms
        self.selected = None
        self.placing = False
        self.manual = None
        self.key_points_ready = False
        self.unedited_label = "detected"
        self.version += 1

    @property
    def has_landmarks(self) -> bool:
        return self.landmarks is not None

    def _lms(self) -> LandmarkSet:
        if self.landmarks is None:
            raise RuntimeError("no landmarks yet: detect them first")
        return self.landmarks

    def rows(self) -> list[LandmarkRow]:
        """The table: in ``order``, without placed landmarks above ``max_confidence``."""
        lms = self.landmarks
        if lms is None:
            return []
        groups = lms.groups
        outlier = {o.index: o.weight for o in self.outliers}
        rows = [
            LandmarkRow(i, lms.names[i], groups[i], float(lms.confidence[i]), lms.provenance[i],
                        bool(lms.enabled[i]), bool(lms.placed_mask[i]), float(lms.weight[i]),
                        outlier.get(i))
            for i in range(len(lms))
        ]
        if self.max_confidence < 1.0:  # only detected ones at or below it
            top = self.max_confidence
            rows = [r for r in rows
                    if r.placed and r.provenance != "edited" and r.confidence <= top]
        if self.order == "confidence":
            rows.sort(key=lambda r: (not r.placed, r.provenance == "edited", r.confidence,
                                     r.index))
        return rows

    def set_order(self, order: str) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.order = order

    # ---- what the fit contradicts --------------------------------------------------------
    @property
    def outliers(self) -> list[LandmarkOutlier]:
        """The fit's outliers (largest residual first), less any landmark edited since the
        fit last said so: an artist's point is trusted, never an outlier."""
        lms = self.landmarks
        if lms is None:
            return []
        return [o for o in self._outliers
                if o.index < len(lms) and lms.provenance[o.index] != "edited"]

    def set_outliers(self, outliers: list[LandmarkOutlier]) -> None:
        """The outliers the fitting worker sent (``LandmarkOutlier.index`` is the iBUG index,
        which is also the row of the 68 iBUG landmarks in a ``LandmarkSet``)."""
        self._outliers = list(outliers)
        self.outliers_version += 1

    def outlier_mask(self) -> np.ndarray:
        """(N,) bool: the landmark is one of ``outliers``."""
        n = len(self.landmarks) if self.landmarks is not None else 0
        mask = np.zeros(n, bool)
        mask[[o.index for o in self.outliers]] = True
        return mask

    # ---- selection and picking -----------------------------------------------------------
    def select(self, index: int | None, *, place: bool = False, focus: bool = False) -> None:
        """Select a landmark (None: none); ``place``: the next click on the scan moves it;
        ``focus``: the viewer turns to it (when it has a surface point)."""
        if index is not None:
            self._lms().index(index)
        self.selected = index
        self.placing = place and index is not None
        if focus and index is not None and self._lms().placed_mask[index]:
            self.focus_request = index

    def apply_pick(self, structure_name: str, structure_data: Mapping[str, Any],
                   target: str) -> bool:
        """Move the selected landmark to a picked point on the scan.

        structure_data: Polyscope's pick data for a surface mesh (``element_type`` "face",
        ``index`` face id, ``bary_coords`` (3,)). Only acts while placing, on ``target``.
        Returns whether a landmark moved. Placing ends after one successful move.
        """
        if not self.placing or self.selected is None or structure_name != target:
            return False
        if structure_data.get("element_type") != "face" or "bary_coords" not in structure_data:
            return False
        return self.pick_face(int(structure_data["index"]),
                              np.asarray(structure_data["bary_coords"], np.float64))

    def pick_face(self, face_id: int, bary: np.ndarray) -> bool:
        """A click hit scan face ``face_id`` at ``bary``: move the landmark being placed
        there. Placing one landmark ends after the move; in manual placement the next one
        in the queue is selected instead. Returns whether a landmark moved."""
        if not self.placing or self.selected is None:
            return False
        self.move(self.selected, int(face_id), np.asarray(bary, np.float64))
        self.placing = False
        m = self.manual
        if m is not None and m.current == self.selected:
            m.advance()
            if m.finished:
                self.key_points_ready = m.mode == "key5"
                self.manual = None
            else:
                self.select(m.current, place=True)
                self.manual = m
        return True

    # ---- placing by hand, without a detector ---------------------------------------------
    def start_manual(self, num_faces: int, mode: str = "all") -> None:
        """Click the landmarks one after the other: "all" (every one not placed yet; all 68
        when there are no landmarks) or "key5" (five key points, the rest initialised from
        them by ``init_from_key_points``). Starts from an empty set when there is none or it
        refers to another scan."""
        if self.landmarks is None or self.landmarks.num_faces != num_faces:
            self.set_landmarks(empty_landmarks(num_faces))
        queue = placement_queue(self.landmarks, mode)
        self.manual = ManualPlacement(mode, queue)
        self.key_points_ready = False
        self.selected, self.placing = queue[0], True
        self.version += 1

    def skip_manual(self) -> None:
        """Leave the current landmark unplaced and go to the next one."""
        m = self.manual
        if m is None:
            return
        m.skip()
        if m.finished:
            self.stop_manual()
        else:
            self.selected, self.placing = m.current, True

    def stop_manual(self) -> None:
        self.manual = None
        self.placing = False

    def manual_hint(self) -> str | None:
        """"Click: <what> (k of n)" for the landmark to click next, None when not placing."""
        m = self.manual
        if m is None or m.current is None or self.landmarks is None:
            return None
        i = m.current
        return (f"Click: {landmark_hint(i, self.landmarks.names[i])}  "
                f"({len(m.done) + 1} of {m.total})")

    def scene_key(self) -> tuple[int, int | None, int]:
        """Changes when the 3D landmark display must be redrawn: an edit, a new selection
        (so the selected landmark is highlighted as soon as it is chosen), new outliers."""
        return self.version, self.selected, self.outliers_version

    # ---- edits ---------------------------------------------------------------------------
    def _edited(self) -> None:
        self.version += 1

    def move(self, index: int, face_id: int, bary: np.ndarray) -> None:
        self._lms().move(index, face_id, bary)
        self._edited()

    def set_enabled(self, index: int, on: bool) -> None:
        self._lms().set_enabled(index, on)
        self._edited()

    def reset(self, index: int) -> None:
        self._lms().reset(index)
        self._edited()

    def set_weight(self, index: int, weight: float) -> None:
        self._lms().set_weight(index, weight)
        self._edited()

    def set_group_weight(self, group: str, weight: float) -> None:
        self._lms().set_group_weight(group, weight)
        self._edited()

    def undo(self) -> None:
        if self.landmarks is not None and self.landmarks.can_undo:
            self.landmarks.undo()
            self._edited()

    def redo(self) -> None:
        if self.landmarks is not None and self.landmarks.can_redo:
            self.landmarks.redo()
            self._edited()

    # ---- hand-off to the fitter ----------------------------------------------------------
    def take_changes(self) -> LandmarkSet | None:
        """A copy of the landmarks if they changed since the last call, else None."""
        if self.landmarks is None or self.version == self._sent_version:
            return None
        self._sent_version = self.version
        return self.landmarks.copy()

    def mark_sent(self) -> None:
        """The fitter was created with the current landmarks: nothing to send."""
        self._sent_version = self.version

    def scene_arrays(self, vertices: np.ndarray, faces: np.ndarray) -> LandmarkDisplay | None:
        """The placed landmarks as the viewer draws them, on a mesh in the scan's topology
        (any frame); the selection's row among them -> see ``placed_index``."""
        lms = self.landmarks
        if lms is None:
            return None
        placed = lms.placed_mask
        edited = np.array([p == "edited" for p in lms.provenance])
        return LandmarkDisplay(lms.positions(vertices, faces)[placed], edited[placed],
                               lms.enabled[placed], lms.confidence[placed],
                               self.outlier_mask()[placed])

    def position(self, index: int, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(3,) landmark ``index`` on a mesh in the scan's topology (any frame)."""
        return self._lms().positions(vertices, faces)[index]

    def placed_index(self) -> int | None:
        """The selected landmark's index among the placed ones (what ``scene_arrays`` lists)."""
        lms = self.landmarks
        if lms is None or self.selected is None or not lms.placed_mask[self.selected]:
            return None
        return int(lms.placed_mask[: self.selected].sum())
