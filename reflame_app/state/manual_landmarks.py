"""Placing landmarks by hand, without a detector: all 68 one after the other, or five key
points from which the rest is initialised (FLAME template landmarks carried onto the scan by
the similarity that best maps the template's five onto the clicked five, then snapped to
the scan surface). Screen-free; the Landmarks panel and the click handler drive it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reflame_core.fit.stages.rigid import umeyama
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.landmarks.definitions import NUM_IBUG, landmark_definitions
from reflame_core.landmarks.landmark_set import UNPLACED, LandmarkSet

# iBUG indices: subject's right eye outer corner, left eye outer corner, nose tip,
# right mouth corner, left mouth corner (right = image left of a frontal view).
KEY_POINTS = (36, 45, 30, 48, 54)
KEY_POINT_LABELS = {36: "right eye, outer corner (image left)",
                    45: "left eye, outer corner (image right)",
                    30: "nose tip",
                    48: "right mouth corner (image left)",
                    54: "left mouth corner (image right)"}
ESTIMATED_CONFIDENCE = 0.3  # initialised from the key points, not seen by a detector


def empty_landmarks(num_faces: int) -> LandmarkSet:
    """The 68 iBUG landmarks, none placed yet, on a scan of ``num_faces`` faces."""
    names = landmark_definitions().ibug_names
    n = len(names)
    bary = np.tile([1.0, 0.0, 0.0], (n, 1))
    return LandmarkSet(names=names, num_faces=int(num_faces), face_idx=np.full(n, UNPLACED),
                       bary=bary, confidence=np.zeros(n))


def landmark_hint(index: int, name: str) -> str:
    """What to click for landmark ``index``, in words."""
    return KEY_POINT_LABELS.get(index, name.replace("_", " "))


@dataclass
class ManualPlacement:
    """A queue of landmark indices to click in order; ``mode`` "all" or "key5"."""

    mode: str
    queue: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)

    @property
    def current(self) -> int | None:
        return self.queue[0] if self.queue else None

    @property
    def finished(self) -> bool:
        return not self.queue

    @property
    def total(self) -> int:
        return len(self.queue) + len(self.done)

    def advance(self) -> None:
        if self.queue:
            self.done.append(self.queue.pop(0))

    def skip(self) -> None:
        """Leave the current landmark unplaced (e.g. hidden by hair) and go on."""
        if self.queue:
            self.queue.pop(0)


def placement_queue(lms: LandmarkSet, mode: str) -> list[int]:
    """Indices to click: "all" = every iBUG landmark not placed yet (all 68 on an empty set),
    "key5" = the five key points."""
    if mode == "key5":
        return list(KEY_POINTS)
    if mode == "all":
        return [i for i in range(NUM_IBUG) if not lms.placed_mask[i]] or list(range(NUM_IBUG))
    raise ValueError(f"unknown placement mode {mode!r}")


def init_from_key_points(lms: LandmarkSet, scan_vertices: np.ndarray, scan_faces: np.ndarray,
                         template_vertices: np.ndarray, template_faces: np.ndarray,
                         embedding) -> LandmarkSet:
    """A new LandmarkSet: the five placed key points kept (edited), every other iBUG landmark
    estimated from the FLAME template's landmarks (``embedding.points``) by the least-squares
    similarity template-key-points -> clicked key points, snapped to the closest scan point.
    Estimated ones are "detected" with low confidence, so Reset goes back to the estimate.

    scan_vertices must be in the frame the template lives in up to a similarity (any frame
    works: the similarity absorbs it)."""
    key = np.array(KEY_POINTS)
    if not lms.placed_mask[key].all():
        raise ValueError("place the five key points first")
    clicked = lms.positions(scan_vertices, scan_faces)[key]
    tmpl = np.asarray(embedding.points(template_vertices, template_faces), np.float64)
    sim = umeyama(tmpl[key], clicked)
    hits = MeshQuery(scan_vertices, scan_faces).closest(sim.apply(tmpl))
    face = hits.face.astype(np.int64)
    bary = hits.bary.astype(np.float64)
    bary = np.clip(bary, 0.0, None)
    bary /= np.maximum(bary.sum(1, keepdims=True), 1e-12)
    n = len(lms)
    face_all = np.full(n, UNPLACED, np.int64)
    bary_all = np.tile([1.0, 0.0, 0.0], (n, 1))
    face_all[:NUM_IBUG], bary_all[:NUM_IBUG] = face, bary
    conf = np.full(n, ESTIMATED_CONFIDENCE)
    det_face, det_bary = face_all.copy(), bary_all.copy()
    provenance = ["detected"] * n
    for i in key:
        face_all[i], bary_all[i] = lms.face_idx[i], lms.bary[i]
        conf[i], provenance[i] = 1.0, "edited"
    return LandmarkSet(names=lms.names, num_faces=lms.num_faces, face_idx=face_all,
                       bary=bary_all, confidence=conf, provenance=provenance,
                       detected_face_idx=det_face, detected_bary=det_bary)


def diagram_points(template_vertices: np.ndarray, template_faces: np.ndarray,
                   embedding) -> np.ndarray:
    """(68,2) frontal 2D positions of the template's landmarks in 0..1 (x right in the image,
    y down), for the reference picture of which point to click next."""
    p = np.asarray(embedding.points(template_vertices, template_faces), np.float64)[:, :2]
    p[:, 1] = -p[:, 1]
    lo, hi = p.min(0), p.max(0)
    span = float((hi - lo).max()) or 1.0
    return (p - lo) / span + (1.0 - (hi - lo) / span) / 2.0


def complete_key_points(editor, scan, template, embedding) -> bool:
    """When the editor's five key points were just placed, replace its landmarks by the full
    initialised set (``init_from_key_points``). Returns whether it did."""
    if not editor.key_points_ready or editor.landmarks is None or scan is None:
        return False
    if template is None or embedding is None:
        raise RuntimeError("set the FLAME folder first: the key points are extended with the "
                           "FLAME template's landmarks")
    editor.key_points_ready = False
    editor.set_landmarks(init_from_key_points(editor.landmarks, scan.vertices, scan.faces,
                                              template.vertices, template.faces, embedding))
    editor.unedited_label = "estimated"
    return True
