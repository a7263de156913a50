"""From file names to a ready ``FitSession``: the one path the CLI and the GUI share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reflame_core.assets.flame import (
    FlameTemplate,
    LandmarkEmbedding,
    load_flame_template,
    load_landmark_embedding,
)
from reflame_core.assets.locate import find_flame_dir
from reflame_core.errors import ReflameError
from reflame_core.fit.config import FitConfig
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.io.mesh import Scan
from reflame_core.io.scan import load_scan
from reflame_core.landmarks.landmark_set import LandmarkSet


@dataclass
class FitInputs:
    scan: Scan
    template: FlameTemplate
    embedding: LandmarkEmbedding
    landmarks: LandmarkSet | None


def load_flame(flame_dir: str | Path | None = None) -> tuple[FlameTemplate, LandmarkEmbedding]:
    """Template and landmark embedding from the FLAME folder (flag, env var or config)."""
    folder = find_flame_dir(flame_dir)
    return load_flame_template(folder), load_landmark_embedding(folder)


def load_inputs(
    scan_path: str | Path,
    *,
    flame_dir: str | Path | None,
    landmarks: str | Path | None,
    config: FitConfig,
    device: str = "cpu",
    log: Callable[[str], None] = lambda _m: None,
) -> FitInputs:
    """Load FLAME, the scan and its landmarks (from ``landmarks`` or detected).

    Detection failing (no detector installed, no face found) is logged and the fit goes on
    without landmarks; a bad landmark file is an error.
    """
    template, embedding = load_flame(flame_dir)
    scan = load_scan(scan_path)
    if landmarks is not None:
        from reflame_core.landmarks.landmark_json import load_landmarks

        lms = load_landmarks(landmarks, num_faces=len(scan.faces))
    else:
        lms = detect_or_none(scan, config, device, log)
    return FitInputs(scan, template, embedding, lms)


def detect_or_none(
    scan: Scan, config: FitConfig, device: str, log: Callable[[str], None]
) -> LandmarkSet | None:
    from reflame_core.landmarks.detect import detect_landmarks

    frame = config.data["frame"]
    try:
        lms = detect_landmarks(scan, up=frame["up"], front=frame["front"], device=device)
    except ReflameError as exc:
        log(f"landmarks: detection unavailable ({exc}); fitting without landmarks")
        return None
    found = int(lms.enabled_mask.sum())
    log(f"landmarks: detected {found} of {len(lms)}")
    return lms if found else None


def make_session(
    inputs: FitInputs, config: FitConfig, *, device: str = "cpu", **kwargs
) -> FitSession:
    targets = (
        LandmarkTargets.from_landmark_set(inputs.landmarks, inputs.scan)
        if inputs.landmarks is not None
        else None
    )
    return FitSession(
        inputs.scan, inputs.template, inputs.embedding, targets, config, device=device, **kwargs
    )
