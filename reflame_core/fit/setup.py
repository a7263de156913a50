"""From file names to a ready ``FitSession``: the one construction path that ``fit_scan`` (so
``reflame fit`` and ``reflame batch``), the studio's worker and the benchmarks share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reflame_core.assets.flame import (
    FlameTemplate,
    LandmarkEmbedding,
    load_flame_template,
    load_landmark_embedding,
)
from reflame_core.assets.locate import find_flame_dir
from reflame_core.errors import InputFileError, ReflameError
from reflame_core.fit.config import FitConfig
from reflame_core.fit.scene import scan_to_canonical
from reflame_core.fit.session import FitSession, FitSnapshot
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan
from reflame_core.io.scan import load_scan
from reflame_core.landmarks.detector import SharedDetector
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.landmarks.plausibility import (
    detection_failed,
    landmark_problems,
    orientation_warning,
)


@dataclass(frozen=True)
class FlameAssets:
    """The FLAME files a fit needs, loaded once (a batch worker keeps them for every scan)."""

    template: FlameTemplate
    embedding: LandmarkEmbedding
    folder: Path | None = None


@dataclass
class FitInputs:
    """What a session is built from; ``landmarks`` are on the scan (a ``LandmarkSet`` as
    loaded or detected, or ``LandmarkTargets`` as the studio sends them), or None."""

    scan: Scan
    template: FlameTemplate
    embedding: LandmarkEmbedding
    landmarks: LandmarkSet | LandmarkTargets | None
    to_canonical: Similarity | None = None  # the scan's frame; None: frame.up/frame.front


def load_flame(flame_dir: str | Path | None = None) -> FlameAssets:
    """Template and landmark embedding from the FLAME folder (flag, env var or config)."""
    folder = find_flame_dir(flame_dir)
    return FlameAssets(load_flame_template(folder), load_landmark_embedding(folder), folder)


def load_inputs(
    scan_path: str | Path,
    *,
    flame_dir: str | Path | FlameAssets | None,
    landmarks: str | Path | None,
    config: FitConfig,
    device: str = "cpu",
    log: Callable[[str], None] = lambda _m: None,
) -> FitInputs:
    """Load FLAME (unless ``flame_dir`` already holds the loaded assets), the scan and its
    landmarks (from ``landmarks`` or detected).

    Detection failing (no detector installed, no face found) is logged and the fit goes on
    without landmarks; a bad landmark file is an error.
    """
    flame = flame_dir if isinstance(flame_dir, FlameAssets) else load_flame(flame_dir)
    template, embedding = flame.template, flame.embedding
    scan = load_scan(scan_path)
    for note in scan.notes:
        log(f"{Path(scan_path).name}: {note}")
    if landmarks is not None:
        from reflame_core.landmarks.landmark_json import load_landmarks

        lms = load_landmarks(landmarks, num_faces=len(scan.faces), scan_vertices=scan.vertices,
                             scan_faces=scan.faces)
        problems = landmark_problems(lms, scan.vertices, scan.faces)
        if problems:
            raise InputFileError(landmarks, "these landmarks cannot be a face on "
                                 f"{Path(scan_path).name}: " + "; ".join(problems))
        sim = scan_frame(scan, config, device, log, lms)
        _warn_orientation(lms, scan, config, log)
    else:
        return detected_inputs(scan, flame, config, device, log)
    return FitInputs(scan, template, embedding, lms, sim)


def detected_inputs(scan: Scan, flame: FlameAssets, config: FitConfig, device: str = "cpu",
                    log: Callable[[str], None] = lambda _m: None) -> FitInputs:
    """The inputs of a scan given without landmarks, as ``reflame fit`` makes them: its frame
    found from the face (``scan_frame``), then its landmarks detected in that frame
    (``detect_or_none``), one detector serving both.

    A frame read off the face in which detection then finds no face (or points that cannot
    be one) is a misreading (a dim, holed face read upside down): the scan's own axes
    (``frame.up``/``frame.front``) are tried instead, and kept whatever detection finds
    there, since a fit without landmarks keeps the turn of the frame it starts in.

    On a scan two head lengths long or more (a stand, a body), the frame is then centred on
    and sized to the head the landmarks mark (``landmarks.orient.head_frame``), its turn kept.
    """
    detector = SharedDetector()
    try:
        sim = scan_frame(scan, config, device, log, detector=detector)
        said: list[str] = []
        lms = detect_or_none(scan, config, device, said.append, to_canonical=sim,
                             detector=detector)
        axes = scan_to_canonical(scan, config)
        if lms is None and not np.allclose(sim.rotation, axes.rotation, atol=1e-6):
            from reflame_core.landmarks.orient import no_face_in_frame

            log(no_face_in_frame(config.get("frame.up"), config.get("frame.front")))
            sim = axes
            lms = detect_or_none(scan, config, device, log, to_canonical=sim, detector=detector)
        else:
            for line in said:
                log(line)
    finally:
        detector.release()
    if lms is not None and config.get("frame.auto"):
        from reflame_core.landmarks.orient import head_frame

        framed, where = head_frame(scan, lms.positions(scan.vertices, scan.faces)[:68],
                                   sim.rotation)
        if where is not None:
            log(f"frame: set on the head in {where}")
            sim = framed
    return FitInputs(scan, flame.template, flame.embedding, lms, sim)


def scan_frame(scan: Scan, config: FitConfig, device: str, log: Callable[[str], None],
               landmarks: LandmarkSet | None = None,
               detector: SharedDetector | None = None) -> Similarity:
    """The scan -> canonical similarity: from ``frame.up``/``frame.front``, or, with
    ``frame.auto``, found from the face (from ``landmarks`` where given, else by a first
    detection pass with ``detector``, default a new one; ``landmarks.orient``), logged in one
    line. Where no face is found, or no detector can run, the axes are used and the log says
    so."""
    frame = config.data["frame"]
    axes = scan_to_canonical(scan, config)
    if not frame.get("auto", False):
        return axes
    from reflame_core.landmarks.orient import find_frame, frame_from_landmarks

    if landmarks is not None:
        found = frame_from_landmarks(landmarks.positions(scan.vertices, scan.faces)[:68], scan)
    else:
        try:
            found = find_frame(scan, (detector or SharedDetector()).get(), device=device)
        except ReflameError as exc:
            log(f"frame: cannot look for the face ({exc}); using up {frame['up']}, front "
                f"{frame['front']}")
            return axes
    if found is None or found.candidates == 0:
        log(f"frame: no face found to orient by; using up {frame['up']}, front "
            f"{frame['front']} (set --up/--front if that is wrong)")
        return axes
    log(f"frame: found {found.describe()} (override with --up/--front)")
    return found.to_canonical


def _warn_orientation(lms: LandmarkSet, scan: Scan, config: FitConfig,
                      log: Callable[[str], None]) -> None:
    if config.data["frame"].get("auto", False):
        return  # the frame was read off the face: "up" is wherever the face says
    warning = orientation_warning(lms, scan.vertices, scan.faces, config.get("frame.up"))
    if warning:
        log(f"landmarks: WARNING: {warning}")


def detect_or_none(
    scan: Scan, config: FitConfig, device: str, log: Callable[[str], None],
    to_canonical: Similarity | None = None, detector: SharedDetector | None = None,
) -> LandmarkSet | None:
    """Detected landmarks, or None (logged in one line) when detection cannot give a face:
    no detector installed, no face found, points that cannot be a face, or the detector
    failing in a way nobody foresaw; the fit then goes on without landmarks. ``to_canonical``:
    the scan's frame (``scan_frame``); None: ``frame.up``/``frame.front``. ``detector``: the
    one orientation used (default a new one)."""
    from reflame_core.landmarks.detect import detect_landmarks

    try:
        lms = detect_landmarks(scan, device=device, backend=(detector or SharedDetector()).get(),
                               to_canonical=to_canonical or scan_to_canonical(scan, config))
    except ReflameError as exc:
        log(f"landmarks: detection unavailable ({exc}); fitting without landmarks")
        return None
    except Exception as exc:  # a detector's own bug must not end the fit
        first = str(exc).splitlines()[0] if str(exc) else ""
        log(f"landmarks: detection failed ({type(exc).__name__}: {first}); "
            "fitting without landmarks")
        return None
    found = int(lms.enabled_mask.sum())
    if not found:
        log("landmarks: no face found on the renders of the scan (check --up/--front); "
            "fitting without landmarks")
        return None
    log(f"landmarks: detected {found} of {len(lms)}")
    problems = landmark_problems(lms, scan.vertices, scan.faces)
    if problems:
        log("landmarks: WARNING: the detected points cannot be a face (" + "; ".join(problems)
            + "); fitting without landmarks")
        return None
    failed = detection_failed(lms)
    if failed:
        log(f"landmarks: WARNING: {failed}; fitting without landmarks (place them in the "
            "studio, or pass a landmark file with --landmarks)")
        return None
    _warn_orientation(lms, scan, config, log)
    return lms


def landmark_targets(
    landmarks: LandmarkSet | LandmarkTargets | None, scan: Scan
) -> LandmarkTargets | None:
    """The 3D targets (scan frame) of landmarks on ``scan``; targets pass through."""
    if landmarks is None or isinstance(landmarks, LandmarkTargets):
        return landmarks
    return LandmarkTargets.from_landmark_set(landmarks, scan)


def make_session(
    inputs: FitInputs,
    config: FitConfig,
    *,
    device: str = "cpu",
    seed: int = 0,
    render_backend: str = "auto",
    restore: FitSnapshot | None = None,
) -> FitSession:
    """The ``FitSession`` on ``inputs`` (in the frame ``inputs.to_canonical``: the one
    ``load_inputs`` found, or the studio's; None: ``frame.up``/``frame.front``); with
    ``restore`` (the last snapshot of a studio worker that died) it continues from there."""
    session = FitSession(
        inputs.scan,
        inputs.template,
        inputs.embedding,
        landmark_targets(inputs.landmarks, inputs.scan),
        config,
        device=device,
        seed=seed,
        render_backend=render_backend,
        to_canonical=inputs.to_canonical,
    )
    if restore is not None:
        session.restore(restore)
    return session
