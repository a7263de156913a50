"""DWPose backend: whole-body pose (face points 23..90 = iBUG 68, eyes, ears) on onnxruntime.

Weights: a given folder, $REFLAME_DWPOSE_DIR, or the user cache
(``$XDG_CACHE_HOME/reflame/dwpose``, default ``~/.cache/reflame/dwpose``), downloaded there
on first use when allowed. Without weights and without network the error says what to fetch
and where to put it.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import numpy as np

from reflame_core.landmarks.definitions import NUM_IBUG, IndexTable, landmark_definitions
from reflame_core.landmarks.detector import Detection2D, DetectorUnavailable
from reflame_core.landmarks.dwpose_onnx import EXTRA_KEYPOINTS, FACE_SLICE, run_wholebody

DET_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
WEIGHTS_URL = "https://huggingface.co/yzd-v/DWPose/resolve/main/{name}"
MIN_SCORE = 0.3  # below this RTMPose's SimCC peak is noise


def dwpose_weights_dir(weights_dir: str | Path | None = None) -> Path:
    """Where the two ONNX files are looked for (and downloaded to)."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    if os.environ.get("REFLAME_DWPOSE_DIR"):
        return Path(os.environ["REFLAME_DWPOSE_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return cache / "reflame" / "dwpose"


def dwpose_weights_present(weights_dir: str | Path | None = None) -> bool:
    folder = dwpose_weights_dir(weights_dir)
    return (folder / DET_FILE).is_file() and (folder / POSE_FILE).is_file()


def _download(name: str, folder: Path, timeout: float = 30.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (name + ".part")
    with urllib.request.urlopen(WEIGHTS_URL.format(name=name), timeout=timeout) as resp, \
            open(tmp, "wb") as out:
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    tmp.replace(folder / name)


def ensure_dwpose_weights(weights_dir: str | Path | None = None, download: bool = True) -> Path:
    """The folder holding both ONNX files, downloading missing ones if allowed."""
    folder = dwpose_weights_dir(weights_dir)
    missing = [n for n in (DET_FILE, POSE_FILE) if not (folder / n).is_file()]
    if missing and download:
        try:
            for name in missing:
                _download(name, folder)
        except OSError as exc:
            raise DetectorUnavailable(
                f"DWPose weights {', '.join(missing)} are not in {folder} and downloading them "
                f"failed ({exc}); fetch them from huggingface.co/yzd-v/DWPose into that folder "
                "(or pass --dwpose-dir / set REFLAME_DWPOSE_DIR)"
            ) from exc
    elif missing:
        raise DetectorUnavailable(
            f"DWPose weights {', '.join(missing)} are not in {folder}; fetch them from "
            "huggingface.co/yzd-v/DWPose into that folder (or pass --dwpose-dir)"
        )
    return folder


class DWPoseDetector:
    """YOLOX + DWPose (RTMPose-l, 384x288) whole-body keypoints, onnxruntime on CPU."""

    name = "dwpose"

    def __init__(self, weights_dir: str | Path | None = None, download: bool = True):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DetectorUnavailable(
                "the `onnxruntime` package is not installed: "
                "pip install 'reflame-studio[landmarks]'"
            ) from exc
        folder = ensure_dwpose_weights(weights_dir, download)
        providers = ["CPUExecutionProvider"]
        self._det = ort.InferenceSession(str(folder / DET_FILE), providers=providers)
        self._pose = ort.InferenceSession(str(folder / POSE_FILE), providers=providers)
        self.point_names = landmark_definitions().ibug_names + tuple(EXTRA_KEYPOINTS)
        self.table = IndexTable.identity(self.point_names)

    def detect(self, images: np.ndarray) -> list[Detection2D | None]:
        """images (B,H,W,3) uint8 RGB -> per image 68 iBUG points + eye centres + ears."""
        out: list[Detection2D | None] = []
        for img in np.asarray(images, np.uint8):
            pts, scores = run_wholebody(self._det, self._pose, img)
            idx = list(range(133))[FACE_SLICE] + list(EXTRA_KEYPOINTS.values())
            p, s = pts[idx].astype(np.float64), np.clip(scores[idx], 0.0, 1.0).astype(np.float64)
            found = s >= MIN_SCORE
            if found[:NUM_IBUG].sum() < NUM_IBUG // 2:
                out.append(None)
                continue
            p[~found] = np.nan
            s[~found] = 0.0
            out.append(Detection2D(self.point_names, p, s))
        return out
