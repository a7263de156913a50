"""Landmark definitions: the 68 iBUG names and groups, the extras, detector index tables.

All read from ``resources/landmarks_*.json`` so the GUI, the fitter and the detectors agree on
one list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from reflame_core.errors import InputFileError
from reflame_core.resources import resources_dir

NUM_IBUG = 68
GROUPS = ("contour", "brows", "nose", "eyes", "lips", "ears")


@dataclass(frozen=True)
class LandmarkDefinitions:
    """Names and groups of every landmark a ``LandmarkSet`` may hold.

    Attributes:
        names: 68 iBUG names then the extras' names.
        groups: group of each name (one of ``GROUPS``).
    """

    names: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def ibug_names(self) -> tuple[str, ...]:
        return self.names[:NUM_IBUG]

    @property
    def extra_names(self) -> tuple[str, ...]:
        return self.names[NUM_IBUG:]

    def group_of(self, name: str) -> str:
        return self.groups[self.names.index(name)]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"cannot read landmark definition: {exc}") from exc


@lru_cache(maxsize=1)
def landmark_definitions() -> LandmarkDefinitions:
    """The iBUG 68 + extras definitions from ``resources/landmarks_ibug68.json``."""
    path = resources_dir() / "landmarks_ibug68.json"
    doc = _read_json(path)
    lms = doc["landmarks"]
    if [lm["index"] for lm in lms] != list(range(NUM_IBUG)):
        raise InputFileError(path, f"'landmarks' must list indices 0..{NUM_IBUG - 1} in order")
    entries = lms + doc["extras"]
    for e in entries:
        if e["group"] not in GROUPS:
            raise InputFileError(path, f"landmark {e['name']!r} has unknown group {e['group']!r}")
    return LandmarkDefinitions(
        names=tuple(e["name"] for e in entries), groups=tuple(e["group"] for e in entries)
    )


@dataclass(frozen=True)
class IndexTable:
    """A detector's points -> iBUG 68 (+ extras) as a sparse weighted-mean matrix.

    Attributes:
        matrix: (68 + E, P) float64; row r gives landmark r as a weighted mean of the
            detector's P points (rows sum to 1).
        names: the 68 iBUG names then the E extras this detector provides.
    """

    matrix: np.ndarray
    names: tuple[str, ...]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map detector points (P,D) (pixels, confidences...) to (68 + E, D)."""
        return self.matrix @ points


@lru_cache(maxsize=4)
def load_index_table(name: str) -> IndexTable:
    """Load ``resources/landmarks_<name>_to_ibug.json`` (e.g. ``name="mediapipe"``)."""
    path = resources_dir() / f"landmarks_{name}_to_ibug.json"
    doc = _read_json(path)
    num_points = int(doc["num_points"])
    key = name
    rows = doc["ibug"] + doc.get("extras", [])
    if [r["ibug"] for r in doc["ibug"]] != list(range(NUM_IBUG)):
        raise InputFileError(path, f"'ibug' must map indices 0..{NUM_IBUG - 1} in order")
    defs = landmark_definitions()
    matrix = np.zeros((len(rows), num_points))
    for r, row in enumerate(rows):
        idx, w = row[key], row["weights"]
        if len(idx) != len(w) or not np.isclose(sum(w), 1.0):
            raise InputFileError(path, f"row {r}: weights must match indices and sum to 1")
        if min(idx) < 0 or max(idx) >= num_points:
            raise InputFileError(path, f"row {r}: point index outside 0..{num_points - 1}")
        np.add.at(matrix[r], idx, w)
    extras = tuple(row["name"] for row in doc.get("extras", []))
    unknown = set(extras) - set(defs.extra_names)
    if unknown:
        raise InputFileError(path, f"unknown extra landmark names {sorted(unknown)}")
    return IndexTable(matrix=matrix, names=defs.ibug_names + extras)
