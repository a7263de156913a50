"""Landmark editor panel: table rows, selection, click-to-move, enable/reset/undo/redo,
per-landmark and per-group weights. The edits themselves are LandmarkSet operations (so
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
from reflame_core.landmarks.landmark_set import LandmarkSet


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
        lms = self.landmarks
        if lms is None:
            return []
        groups = lms.groups
        return [
            LandmarkRow(i, lms.names[i], groups[i], float(lms.confidence[i]), lms.provenance[i],
                        bool(lms.enabled[i]), bool(lms.placed_mask[i]), float(lms.weight[i]))
            for i in range(len(lms))
        ]

    # ---- selection and picking -----------------------------------------------------------
    def select(self, index: int | None, *, place: bool = False) -> None:
        if index is not None:
            self._lms().index(index)
        self.selected = index
        self.placing = place and index is not None

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

    def scene_key(self) -> tuple[int, int | None]:
        """Changes when the 3D landmark display must be redrawn: an edit or a new selection
        (so the selected landmark is highlighted as soon as it is chosen)."""
        return self.version, self.selected

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

    def scene_arrays(self, vertices: np.ndarray, faces: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(positions (M,3), edited (M,), enabled (M,)) of the placed landmarks, on a mesh in
        the scan's topology (any frame), plus the row of the selection -> see ``placed_index``."""
        lms = self.landmarks
        if lms is None:
            return None
        placed = lms.placed_mask
        pos = lms.positions(vertices, faces)[placed]
        edited = np.array([p == "edited" for p in lms.provenance])[placed]
        return pos, edited, lms.enabled[placed]

    def placed_index(self) -> int | None:
        """The selected landmark's index among the placed ones (what ``scene_arrays`` lists)."""
        lms = self.landmarks
        if lms is None or self.selected is None or not lms.placed_mask[self.selected]:
            return None
        return int(lms.placed_mask[: self.selected].sum())
