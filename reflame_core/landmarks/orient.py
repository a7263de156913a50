"""Auto-orientation: which way a scan's face looks and which way is up, found by detection.

A scan may arrive with any up and front axis (Z-up, facing -X, ...) and tilted. ``find_frame``
first asks whether the scan's own axes already face the cameras (one frontal pass, the
refinement below). Only where they do not, it renders the scan at low resolution from the six
axis directions, each image also turned by 90°, 180° and 270° (a face upside down or on its
side is not found by a detector trained on upright faces), detects, lifts each view's points
onto the surface and reads a face frame off the 3D landmarks (``face_axes``: eye-to-eye is +x,
mouth-to-eyes is up). The most confident reading wins (the detector reads faces upside down
too, but scores them lower) and is refined by a small frontal detection pass in its own frame
(twice at most); where that pass does not confirm it, the next distinct readings are tried,
then the same again at twice the resolution. Yaw and roll come from the face, the pitch from
the nearest scan axis (``_axis_pitch``). The result is the scan -> canonical ``Similarity``
that ``geometry.frame.canonical_frame`` would give for the right axes, for any rotation.
Where the whole scan confirms no face (a head on a tall stand, a body: the face a few dozen
pixels in the renders), the scan's ends are searched the same way (``head_crops``), and the
frame is centred on and sized to the end that shows one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reflame_core.geometry.frame import (
    AXIS_NAMES,
    CANONICAL_EXTENT,
    axis_vector,
    canonical_frame,
    rotated_frame,
)
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan
from reflame_core.landmarks.detector import LandmarkDetector
from reflame_core.landmarks.lifting import facing_cosine, lift_points
from reflame_core.render.cameras import OrbitCameras

COARSE_RESOLUTION = 160  # px; a face filling a third of it is still found
REFINE_RESOLUTION = 320
REFINE_AZIMUTH = 30.0  # refinement views at azimuth -30, 0, +30 degrees
AGREE_DEG = 20.0  # candidates within this angle of each other vote together
SNAP_PITCH_DEG = 30.0  # see _axis_pitch
REFINE_PASSES = 2  # at most; a pass that turns the frame by under 3 degrees is the last
CONFIRMED = 0.3  # refinement agreement that settles a reading (else the next is tried)
MAX_READINGS = 3  # distinct readings tried at most
# The face's own up (mouth to eyes) leans back from the head's canonical +y, the mouth being
# ahead of the eyes: by 16.4 degrees on the generator's heads (tuning seeds 2001-2020, truth
# landmarks; std 1.7 degrees).
FACE_PITCH_DEG = 16.4
# iBUG pairs (subject's right, subject's left): eye corners, brows, mouth corners, nose wings
# (not the jaw: its points move most with the view). Their differences point to the subject's
# left, which is +x in the canonical frame.
SYMMETRIC_PAIRS = ((36, 45), (39, 42), (17, 26), (21, 22), (48, 54), (31, 35))
EYES, MOUTH = slice(36, 48), slice(48, 68)


@dataclass
class FoundFrame:
    """The frame ``find_frame`` found.

    Attributes:
        to_canonical: scan -> canonical similarity (face towards +z, up +y, template size).
        confidence: in [0,1]: the share of the last refinement pass's views that found the
            face and agree, times their mean detection score (0: not confirmed; with
            ``candidates`` 0, no face found at all and the frame is +y up, +z front). Below
            ``CONFIRMED`` the frame is a guess from the coarse pass.
        up, front: (3,) unit vectors in the scan frame.
        candidates: coarse views (with image turns) in which a face was found.
        part: where the face was found when the whole scan showed none ("the +y end, 35%
            of the scan's size"), the frame then centred on and sized to that part; None
            for the whole scan.
    """

    to_canonical: Similarity
    confidence: float
    up: np.ndarray
    front: np.ndarray
    candidates: int
    part: str | None = None

    def describe(self) -> str:
        """One line, e.g. ``up +z (3° off), front -y (5° off), confidence 0.95``."""
        if self.candidates == 0:
            return "no face found from any direction: using up +y, front +z"
        if self.confidence < CONFIRMED:
            return (f"up {_nearest_axis(self.up)}, front {_nearest_axis(self.front)}, "
                    f"confidence {self.confidence:.2f} (not confirmed: check it)")
        where = "" if self.part is None else f", the head in {self.part}"
        return (f"up {_nearest_axis(self.up)}, front {_nearest_axis(self.front)}, "
                f"confidence {self.confidence:.2f}{where}")


def _nearest_axis(v: np.ndarray) -> str:
    names = list(AXIS_NAMES)
    dots = np.array([axis_vector(n) for n in names]) @ v
    best = int(np.argmax(dots))
    off = np.degrees(np.arccos(np.clip(dots[best], -1.0, 1.0)))
    return f"{names[best]} ({off:.0f}° off)"


def face_axes(landmarks: np.ndarray) -> np.ndarray | None:
    """(3,3) rotation whose rows are the face's +x (towards the subject's left), up and front,
    in the frame of ``landmarks`` (68,3) iBUG points (NaN rows ignored); None without the eyes,
    the mouth or two symmetric pairs."""
    p = np.asarray(landmarks, np.float64)
    diffs = [p[b] - p[a] for a, b in SYMMETRIC_PAIRS if np.isfinite(p[[a, b]]).all()]
    eyes, mouth = p[EYES], p[MOUTH]
    eyes, mouth = eyes[np.isfinite(eyes).all(1)], mouth[np.isfinite(mouth).all(1)]
    if len(diffs) < 2 or len(eyes) < 4 or len(mouth) < 4:
        return None
    x = np.sum([d / max(np.linalg.norm(d), 1e-12) for d in diffs], axis=0)
    up = eyes.mean(0) - mouth.mean(0)
    if np.linalg.norm(x) < 1e-9 or np.linalg.norm(up) < 1e-9:
        return None
    x /= np.linalg.norm(x)
    up -= (up @ x) * x
    up /= max(np.linalg.norm(up), 1e-12)
    pitch = np.radians(FACE_PITCH_DEG)
    front = np.cross(x, up)
    # Undo the face's lean: the head's up is the face's up turned forward about x.
    head_up = np.cos(pitch) * up + np.sin(pitch) * front
    return np.stack([x, head_up, np.cross(x, head_up)])


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation between rotations a (3,3) and b (3,3)."""
    c = (np.trace(a @ b.T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _view_rotations() -> list[np.ndarray]:
    """Rotations turning each of the six axis directions towards +z (the camera)."""
    out = []
    for front, up in (("+z", "+y"), ("-z", "+y"), ("+x", "+y"), ("-x", "+y"), ("+y", "+z"),
                      ("-y", "+z")):
        f, u = axis_vector(front), axis_vector(up)
        out.append(np.stack([np.cross(u, f), u, f]))
    return out


def _unturn(points: np.ndarray, turns: int, size: int) -> np.ndarray:
    """Pixels (K,2) found in ``np.rot90(image, turns)`` -> pixels of the unturned image."""
    p = np.asarray(points, np.float64)
    for _ in range(turns % 4):
        # rot90 (counter-clockwise): new (x, y) = (y, size - x), so old = (size - y, x).
        p = np.stack([size - p[:, 1], p[:, 0]], 1)
    return p


def _view_axes(scan: Scan, cameras: OrbitCameras, detector: LandmarkDetector, turns: int,
               device: str) -> list[tuple[np.ndarray, float]]:
    """Render ``scan`` from every camera, each image also turned by 90° ``turns - 1`` times;
    per image with a face: (the face rotation read off its lifted points, in ``scan``'s frame;
    the detection's score)."""
    from reflame_core.landmarks.detect import render_for_detection

    images, out = render_for_detection(scan, cameras, device=device)
    tri_id = out.tri_id.cpu().numpy()
    pix, depth = cameras.project(scan.vertices)
    cam_positions = cameras.camera_positions()
    verts = np.asarray(scan.vertices, np.float64)
    batch = np.stack([np.ascontiguousarray(np.rot90(img, k)) for img in images
                      for k in range(turns)])
    found = []
    for i, det in enumerate(detector.detect(batch)):
        if det is None:
            continue
        b, k = divmod(i, turns)
        face, bary = lift_points(_unturn(det.points, k, cameras.resolution), tri_id[b], pix[b],
                                 depth[b], scan.faces)
        pts = np.full((len(face), 3), np.nan)
        hit = np.flatnonzero(face >= 0)
        tri = verts[scan.faces[face[hit]]]
        p = np.einsum("kc,kcd->kd", bary[hit], tri)
        # A point over a hole lifts onto the inside of the far side of the head, seen from
        # behind: one such eye corner turns the face by tens of degrees.
        seen = facing_cosine(tri, p, cam_positions[b]) > 0.0
        pts[hit[seen]] = p[seen]
        pts = _fill_from_neighbours(pts, det.points)
        axes = face_axes(detector.table.apply(pts)[:68])
        if axes is not None:
            found.append((axes, float(det.score)))
    return found


def _fill_from_neighbours(points: np.ndarray, pixels: np.ndarray, k: int = 8) -> np.ndarray:
    """``points`` (K,3) with the rows that did not lift (NaN) but were detected (``pixels``
    (K,2) finite) placed by an affine map from pixels to 3D, fitted to their ``k`` nearest
    lifted neighbours on the image: where the surface they lie on is missing (a hole over an
    eye), the face around it says where it was. Rows with fewer than 4 lifted points in
    the image stay NaN."""
    out = points.copy()
    lifted = np.isfinite(points).all(1) & np.isfinite(pixels).all(1)
    missing = np.flatnonzero(~np.isfinite(points).all(1) & np.isfinite(pixels).all(1))
    if missing.size == 0 or lifted.sum() < 4:
        return out
    src_px, src_3d = pixels[lifted], points[lifted]
    for i in missing:
        near = np.argsort(np.linalg.norm(src_px - pixels[i], axis=1))[:k]
        a = np.c_[src_px[near], np.ones(len(near))]
        coef, *_ = np.linalg.lstsq(a, src_3d[near], rcond=None)
        out[i] = np.r_[pixels[i], 1.0] @ coef
    return out


def _coarse_candidates(canon: Scan, detector: LandmarkDetector, device: str,
                       resolution: int = COARSE_RESOLUTION) -> list[tuple[np.ndarray, float]]:
    """(face rotation in ``canon``'s frame, the detection's score) per axis direction and
    image turn in which a face was found."""
    camera = OrbitCameras(num_views=1, azimuth_range=0.0, resolution=resolution)
    found = []
    for q in _view_rotations():
        view = canon.transformed(Similarity(1.0, q))
        # Rows are directions in the turned view's frame: ``@ q`` takes them back to canon's.
        found += [(axes @ q, score) for axes, score in _view_axes(view, camera, detector, 4,
                                                                    device)]
    return found


def _clusters(candidates: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
    """Distinct orientations among the candidates, best first: (the most confident candidate
    of the cluster, its score) for the candidates within ``AGREE_DEG`` of each other.

    The best detection, not the most: a detector reads a face upside down or sideways from
    several turned images, but scores it best where it is upright.
    """
    left = sorted(candidates, key=lambda c: -c[1])
    out = []
    while left:
        axes, score = left[0]
        near = [rotation_angle_deg(axes, c[0]) <= AGREE_DEG for c in left]
        out.append((axes, score))
        left = [c for c, n in zip(left, near, strict=True) if not n]
    return out


def _mean_rotation(rotations: list[np.ndarray]) -> np.ndarray:
    """The rotation nearest (Frobenius) to the mean of the given rotations (3,3)."""
    u, _, vt = np.linalg.svd(np.sum(rotations, axis=0))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _refine(scan: Scan, rotation: np.ndarray, detector: LandmarkDetector, device: str
            ) -> tuple[np.ndarray, float]:
    """Detect again in the frame of ``rotation``, upright, from the front and ±30° (the side
    views' errors on the hidden half of the face cancel): the corrected rotation and how
    sure: the share of views that found a face and agree within ``AGREE_DEG`` times their
    mean detection score (0 where none did)."""
    canon = scan.transformed(rotated_frame(scan.vertices, rotation))
    cameras = OrbitCameras(num_views=3, azimuth_range=REFINE_AZIMUTH, elevations=(0.0,),
                           resolution=REFINE_RESOLUTION)
    views = _view_axes(canon, cameras, detector, 1, device)
    if not views:
        return rotation, 0.0
    centre = _mean_rotation([a for a, _ in views])
    agree = [(a, c) for a, c in views if rotation_angle_deg(a, centre) <= AGREE_DEG]
    if not agree:
        return rotation, 0.0
    axes = _mean_rotation([a for a, _ in agree])
    score = len(agree) / cameras.num_total * float(np.mean([c for _, c in agree]))
    return axes @ rotation, score


def _axis_pitch(rotation: np.ndarray) -> np.ndarray:
    """``rotation`` with its pitch (about its own +x) taken from the nearest scan axis, where
    an axis lies within ``SNAP_PITCH_DEG`` of its up.

    Eye-to-eye (+x) is read well from a face; its pitch is not (mouth-to-eyes leans with the
    face's shape: 16° ± 2 on the generator's heads, up to ±20° with the wild world's
    proportions and shape), while scans mostly come with an axis up and a detector takes the
    pitch of a tilted head in its stride.
    """
    x, up = rotation[0], rotation[1]
    axes = np.array([axis_vector(n) for n in AXIS_NAMES])
    axes = axes - np.outer(axes @ x, x)  # onto the plane normal to x
    norms = np.linalg.norm(axes, axis=1)
    cos = (axes @ up) / np.maximum(norms, 1e-12)
    best = int(np.argmax(np.where(norms > 0.5, cos, -1.0)))
    if cos[best] < np.cos(np.radians(SNAP_PITCH_DEG)):
        return rotation
    new_up = axes[best] / norms[best]
    return np.stack([x, new_up, np.cross(x, new_up)])


def _refine_passes(scan: Scan, rotation: np.ndarray, detector: LandmarkDetector, device: str
                   ) -> tuple[np.ndarray, float]:
    """``_refine`` until it turns the frame by less than 3 degrees (``REFINE_PASSES`` at most)."""
    score = 0.0
    for _ in range(REFINE_PASSES):
        refined, score = _refine(scan, rotation, detector, device)
        moved = rotation_angle_deg(refined, rotation)
        rotation = refined
        if moved < 3.0:
            break
    return rotation, score


def find_frame(scan: Scan, detector: LandmarkDetector, *, device: str = "cpu") -> FoundFrame:
    """The scan -> canonical similarity found from the face itself (see the module doc).

    Where the whole scan confirms no face, its ends are searched the same way
    (``head_crops``: a head on a stand, a body), and the one that confirms a face most
    surely gives the frame, centred on and sized to that part: the face then fills the views
    that detection and the fit render. (The most sure, not the first: a part holding much
    besides the head frames its face small and is read less surely, at times wrongly.)

    Args:
        scan: in its own frame, any orientation and units.
        detector: a 2D landmark detector (``get_detector``).
        device: torch device for rendering.
    Returns:
        A ``FoundFrame``; where no face is found from any direction, its ``to_canonical`` is
        ``canonical_frame(+y, +z)`` and its confidence 0.
    """
    from reflame_core.landmarks.head_crops import head_crops

    found = _search(scan, detector, device)
    if found.confidence >= CONFIRMED:
        return found
    best = None
    for where, part in head_crops(scan):
        in_part = _search(part, detector, device)
        if in_part.confidence >= max(CONFIRMED, best.confidence if best else 0.0):
            in_part.part = where
            best = in_part
    return best or found


def _search(scan: Scan, detector: LandmarkDetector, device: str) -> FoundFrame:
    """``find_frame`` on the whole of ``scan``."""
    # The scan's own axes first: most scans come +y up, facing +z, and where a frontal pass
    # confirms a face there (a fraction of a second) no search is needed. The search reads
    # a bust or a face on a dark, untextured scan wrongly more often than this check does.
    rotation, score = _refine_passes(scan, np.eye(3), detector, device)
    if score >= CONFIRMED:
        return _found(scan, rotation, score, 1)
    start = canonical_frame(scan.vertices)  # centred and scaled; no turn
    canon = scan.transformed(start)
    # The most confident reading first; where its refinement does not confirm it (no view
    # agrees), the next distinct readings are tried and the best kept; where the scan's own
    # axes saw a face and no reading does better, the axes stay. Where nothing is confirmed,
    # look again, sharper: a face that is small in its renders (a bust with shoulders, a
    # dim untextured face) may only be read the right way up at twice the resolution.
    best, best_score = (rotation, score) if score > 0 else (None, -1.0)
    tried: list[np.ndarray] = []
    found = 0
    for resolution in (COARSE_RESOLUTION, 2 * COARSE_RESOLUTION):
        candidates = _coarse_candidates(canon, detector, device, resolution)
        found += len(candidates)
        for axes, _ in _clusters(candidates)[:MAX_READINGS]:
            if any(rotation_angle_deg(axes, t) <= AGREE_DEG for t in tried):
                continue
            tried.append(axes)
            rotation, agreement = _refine_passes(scan, axes, detector, device)
            if agreement > best_score:
                best, best_score = rotation, agreement
            if best_score >= CONFIRMED:
                return _found(scan, best, best_score, found)
    if best is None:
        return FoundFrame(start, 0.0, np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), 0)
    return _found(scan, best, best_score, found)


def _found(scan: Scan, rotation: np.ndarray, score: float, candidates: int) -> FoundFrame:
    rotation = _axis_pitch(rotation)
    return FoundFrame(rotated_frame(scan.vertices, rotation), float(score),
                      rotation[1].copy(), rotation[2].copy(), candidates)


def no_face_in_frame(up: str, front: str) -> str:
    """What the log says when detection finds no face in a frame read off the face and the
    scan's own axes (``up``, ``front``) are used instead."""
    return (f"frame: detection found no face in that frame; using up {up}, front {front} "
            "instead (set --up/--front if that is wrong)")


def frame_from_landmarks(points68: np.ndarray, scan: Scan) -> FoundFrame | None:
    """The frame of a face whose iBUG landmarks (68,3) (scan frame, NaN rows unplaced) are
    known already (a landmark file): no detection. None where they give no frame."""
    axes = face_axes(points68)
    if axes is None:
        return None
    rotation = _axis_pitch(axes)
    frame, where = head_frame(scan, points68, rotation)
    return FoundFrame(frame, 1.0, rotation[1].copy(), rotation[2].copy(), 1, where)


def head_frame(scan: Scan, points68: np.ndarray, rotation: np.ndarray
               ) -> tuple[Similarity, str | None]:
    """The frame turned by ``rotation`` (3,3) (rows: the scan-frame directions that become
    +x, +y, +z) and centred on and sized to the scan; or, on a scan two head lengths long or
    more (a stand, a body), to the head box its iBUG landmarks (68,3) mark
    (``head_crops.landmark_head``), as on a scan of the head alone: the head then fills the
    views the fit renders at the template's size. Returns (frame, where the head is, or None
    for the whole scan)."""
    from reflame_core.landmarks.head_crops import landmark_head

    head = landmark_head(scan, np.asarray(points68, np.float64), rotation)
    if head is None:
        return rotated_frame(scan.vertices, rotation), None
    where, centre, extent = head
    scale = CANONICAL_EXTENT / extent
    rot = np.asarray(rotation, np.float64)
    return Similarity(scale, rot, -scale * (rot @ centre)), where
