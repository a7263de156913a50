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

    def indices(self, group: str) -> np.ndarray:
        """(K,) int64 iBUG indices (0..67) of the landmarks in ``group``."""
        return np.array([i for i, g in enumerate(self.groups[:NUM_IBUG]) if g == group],
                        np.int64)


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
    """A detector's own points -> the iBUG 68 (+ extras), as a sparse affine-combination matrix.

    Applied in 3D, to the detector's points after they are lifted onto the scan and fused over
    the views: a combination of 3D surface points is the same whichever view saw them, which a
    combination of 2D pixels is not (the jaw contour of one view is not that of another).

    Attributes:
        matrix: (68 + E, P) float64; row r gives landmark r as an affine combination of the
            detector's P points (rows sum to 1; negative weights extrapolate).
        names: the 68 iBUG names then the E extras this detector provides.
    """

    matrix: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def identity(cls, names: tuple[str, ...]) -> IndexTable:
        """For a detector whose own points already are the named landmarks."""
        return cls(matrix=np.eye(len(names)), names=tuple(names))

    def with_rows(self, other: IndexTable, rows: slice | np.ndarray) -> IndexTable:
        """This table with ``other``'s ``rows`` (same detector points and names)."""
        if other.matrix.shape != self.matrix.shape or other.names != self.names:
            raise ValueError("tables of different detectors or landmarks")
        matrix = self.matrix.copy()
        matrix[rows] = other.matrix[rows]
        return IndexTable(matrix=matrix, names=self.names)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map detector points (P,D) to (68 + E, D); a row is NaN where a point it uses is."""
        pts = np.asarray(points, np.float64)
        missing = ~np.isfinite(pts).all(1)
        out = self.matrix @ np.where(missing[:, None], 0.0, pts)
        out[(self.matrix[:, missing] != 0).any(1)] = np.nan
        return out


@lru_cache(maxsize=4)
def load_index_table(name: str) -> IndexTable:
    """Load ``resources/landmarks_<name>_to_ibug.json`` (e.g. ``name="mediapipe"``)."""
    path = resources_dir() / f"landmarks_{name}_to_ibug.json"
    return read_index_table(path, name)


def read_index_table(path: Path, key: str) -> IndexTable:
    """Read a table file whose rows give point indices under ``key`` and their weights."""
    doc = _read_json(path)
    try:
        num_points = int(doc["num_points"])
        rows = doc["ibug"] + doc.get("extras", [])
        if [r["ibug"] for r in doc["ibug"]] != list(range(NUM_IBUG)):
            raise InputFileError(path, f"'ibug' must map indices 0..{NUM_IBUG - 1} in order")
        matrix = np.zeros((len(rows), num_points))
        for r, row in enumerate(rows):
            idx, w = row[key], row["weights"]
            if len(idx) != len(w) or not np.isclose(sum(w), 1.0):
                raise InputFileError(path, f"row {r}: weights must match indices and sum to 1")
            if min(idx) < 0 or max(idx) >= num_points:
                raise InputFileError(path, f"row {r}: point index outside 0..{num_points - 1}")
            np.add.at(matrix[r], idx, w)
        extras = tuple(row["name"] for row in doc.get("extras", []))
    except InputFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"not a landmark index table: {exc!r}") from exc
    unknown = set(extras) - set(landmark_definitions().extra_names)
    if unknown:
        raise InputFileError(path, f"unknown extra landmark names {sorted(unknown)}")
    return IndexTable(matrix=matrix, names=landmark_definitions().ibug_names + extras)


def write_index_table(path: Path, table: IndexTable, key: str, description: str) -> None:
    """Write ``table`` in the format ``read_index_table(path, key)`` reads."""
    rows = []
    for r, name in enumerate(table.names):
        idx = np.flatnonzero(table.matrix[r])
        w = np.round(table.matrix[r, idx], 6)
        w[np.argmax(np.abs(w))] += 1.0 - w.sum()  # rounding must not break the sum
        row = {key: idx.tolist(), "weights": [round(float(v), 6) for v in w]}
        rows.append(({"ibug": r} if r < NUM_IBUG else {"name": name}) | row)

    def block(items: list[dict]) -> str:  # one row per line: diffs stay readable
        return "[\n  " + ",\n  ".join(json.dumps(r) for r in items) + "\n ]"

    text = (f'{{\n "description": {json.dumps(description)},\n'
            f' "num_points": {int(table.matrix.shape[1])},\n'
            f' "ibug": {block(rows[:NUM_IBUG])},\n "extras": {block(rows[NUM_IBUG:])}\n}}\n')
    Path(path).write_text(text)
