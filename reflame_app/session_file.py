"""Save and load a studio session as JSON, and where autosaves go.

A session file holds what is needed to come back to the same work: scan path, FLAME folder,
config overrides, landmarks (the LandmarkSet's own JSON form), the canonical frame (the
scan -> canonical similarity, as corrected by the user) and the fitted vertices (5023,3) in
that frame. Writes go through a temporary file and a rename so a crash
mid-write never destroys the previous save.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reflame_core.errors import InputFileError
from reflame_core.io.atomic import write_json_atomic

FORMAT = "reflame-session"
VERSION = 1


def autosave_dir() -> Path:
    """$REFLAME_AUTOSAVE_DIR, else $XDG_DATA_HOME/reflame/autosave (~/.local/share/...)."""
    env = os.environ.get("REFLAME_AUTOSAVE_DIR")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "reflame" / "autosave"


@dataclass
class SessionData:
    scan_path: str | None = None
    flame_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    landmarks: dict | None = None
    fitted_vertices: np.ndarray | None = None  # (5023,3) canonical frame
    frame: dict | None = None  # scan -> canonical Similarity.to_dict() plus "source"

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "scan_path": self.scan_path,
            "flame_dir": self.flame_dir,
            "overrides": self.overrides,
            "landmarks": self.landmarks,
            "fitted_vertices": None if self.fitted_vertices is None
            else np.asarray(self.fitted_vertices, np.float64).round(7).tolist(),
            "frame": self.frame,
        }


def save_session(path: str | Path, data: SessionData) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, data.to_json())


def load_session(path: str | Path) -> SessionData:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(path, "session file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a valid session file (JSON error: {exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputFileError(path, f"not a ReFLAME session file (missing format '{FORMAT}')")
    if raw.get("version", 0) > VERSION:
        raise InputFileError(path, f"session version {raw['version']} is newer than this app")
    verts = raw.get("fitted_vertices")
    if verts is not None:
        verts = np.asarray(verts, np.float32)
        if verts.ndim != 2 or verts.shape[1] != 3:
            raise InputFileError(path, f"fitted_vertices must be (N,3), got {verts.shape}")
    frame = raw.get("frame")
    if frame is not None and not isinstance(frame, dict):
        raise InputFileError(path, "frame must be an object (scale, rotation, translation)")
    return SessionData(
        scan_path=raw.get("scan_path"),
        flame_dir=raw.get("flame_dir"),
        overrides=dict(raw.get("overrides") or {}),
        landmarks=raw.get("landmarks"),
        fitted_vertices=verts,
        frame=frame,
    )
