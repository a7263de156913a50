"""Save/load a ``LandmarkSet`` as versioned JSON; bad files raise ``InputFileError`` saying why.

Schema (``format: "reflame-landmarks"``, ``version: 1``)::

    {"format": "reflame-landmarks", "version": 1,
     "scan": {"num_faces": F},
     "group_weights": {"contour": 1.0, ...},
     "landmarks": [{"name": "contour_00", "face": 123, "bary": [a, b, c],
                    "confidence": 0.9, "provenance": "detected", "enabled": true,
                    "weight": 1.0, "detected": {"face": 123, "bary": [a, b, c]},
                    "position": [x, y, z]}, ...]}

``face`` is -1 for a landmark not placed. ``position`` (scan frame) is written for people and
other tools to read; loading ignores it (the surface point is the truth).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reflame_core.errors import InputFileError
from reflame_core.io.atomic import write_json_atomic
from reflame_core.landmarks.landmark_set import LandmarkSet

FORMAT = "reflame-landmarks"
VERSION = 1


def landmarks_to_dict(lms: LandmarkSet, vertices: np.ndarray | None = None,
                      faces: np.ndarray | None = None) -> dict:
    """JSON-ready dict; with the scan's vertices (V,3) and faces (F,3) positions are added."""
    pos = lms.positions(vertices, faces) if vertices is not None else None
    entries = []
    for i, name in enumerate(lms.names):
        e = {
            "name": name,
            "face": int(lms.face_idx[i]),
            "bary": [float(b) for b in lms.bary[i]],
            "confidence": float(lms.confidence[i]),
            "provenance": lms.provenance[i],
            "enabled": bool(lms.enabled[i]),
            "weight": float(lms.weight[i]),
            "detected": {
                "face": int(lms.detected_face_idx[i]),
                "bary": [float(b) for b in lms.detected_bary[i]],
            },
        }
        if pos is not None and lms.placed_mask[i]:
            e["position"] = [float(x) for x in pos[i]]
        entries.append(e)
    return {
        "format": FORMAT,
        "version": VERSION,
        "scan": {"num_faces": int(lms.num_faces)},
        "group_weights": dict(lms.group_weights),
        "landmarks": entries,
    }


def save_landmarks(path: str | Path, lms: LandmarkSet, vertices: np.ndarray | None = None,
                   faces: np.ndarray | None = None) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written file."""
    write_json_atomic(path, landmarks_to_dict(lms, vertices, faces))


def _need(cond: bool, path: Path | None, problem: str) -> None:
    if not cond:
        raise InputFileError(path, problem)


def _bary(value: object, path: Path | None, where: str) -> list[float]:
    ok = (
        isinstance(value, list) and len(value) == 3
        and all(isinstance(v, (int, float)) and np.isfinite(v) for v in value)
    )
    _need(ok, path, f"{where}: 'bary' must be a list of 3 numbers")
    _need(min(value) >= -1e-4 and abs(sum(value) - 1) <= 1e-3, path,
          f"{where}: 'bary' must be >= 0 and sum to 1, got {value}")
    return value


def landmarks_from_dict(doc: object, path: Path | None = None,
                        num_faces: int | None = None) -> LandmarkSet:
    """Validate and build; ``num_faces`` (the scan's face count) is checked when given."""
    _need(isinstance(doc, dict), path, "not a landmark file (top level is not a JSON object)")
    _need(doc.get("format") == FORMAT, path,
          f"not a landmark file ('format' is {doc.get('format')!r}, expected {FORMAT!r})")
    version = doc.get("version")
    _need(isinstance(version, int), path, "'version' missing or not an integer")
    _need(version <= VERSION, path,
          f"landmark file version {version} is newer than this program reads ({VERSION}); "
          "update ReFLAME Studio")
    scan = doc.get("scan")
    _need(isinstance(scan, dict) and isinstance(scan.get("num_faces"), int)
          and scan["num_faces"] > 0, path, "'scan.num_faces' missing or not a positive integer")
    file_faces = scan["num_faces"]
    _need(num_faces is None or num_faces == file_faces, path,
          f"landmarks were placed on a scan with {file_faces} faces, this scan has {num_faces}")
    entries = doc.get("landmarks")
    _need(isinstance(entries, list) and len(entries) >= 68, path,
          "'landmarks' must be a list of at least the 68 iBUG landmarks")
    fields: dict[str, list] = {k: [] for k in (
        "names", "face_idx", "bary", "confidence", "provenance", "enabled", "weight",
        "detected_face_idx", "detected_bary")}
    for i, e in enumerate(entries):
        where = f"landmark {i}"
        _need(isinstance(e, dict) and isinstance(e.get("name"), str), path,
              f"{where}: not an object with a 'name'")
        where = f"landmark {i} ({e['name']})"
        for key, face in (("face", e.get("face")), ("detected.face",
                                                    (e.get("detected") or {}).get("face"))):
            _need(isinstance(face, int) and -1 <= face < file_faces, path,
                  f"{where}: '{key}' must be an integer face id in -1..{file_faces - 1}, "
                  f"got {face!r}")
        fields["names"].append(e["name"])
        fields["face_idx"].append(e["face"])
        fields["bary"].append(_bary(e.get("bary"), path, where))
        fields["detected_face_idx"].append(e["detected"]["face"])
        fields["detected_bary"].append(_bary(e["detected"].get("bary"), path, where + " detected"))
        conf, w = e.get("confidence", 1.0), e.get("weight", 1.0)
        _need(isinstance(conf, (int, float)) and 0 <= conf <= 1, path,
              f"{where}: 'confidence' must be a number in [0,1]")
        _need(isinstance(w, (int, float)) and w >= 0, path,
              f"{where}: 'weight' must be a number >= 0, got {w!r}")
        _need(isinstance(e.get("enabled", True), bool), path, f"{where}: 'enabled' must be bool")
        fields["confidence"].append(conf)
        fields["weight"].append(w)
        fields["enabled"].append(e.get("enabled", True) and e["face"] != -1)
        fields["provenance"].append(e.get("provenance", "detected"))
    group_weights = doc.get("group_weights") or {}
    _need(isinstance(group_weights, dict) and all(
        isinstance(v, (int, float)) and v >= 0 for v in group_weights.values()), path,
          f"'group_weights' must map group names to numbers >= 0, got {group_weights!r}")
    try:
        return LandmarkSet(
            names=tuple(fields["names"]), num_faces=file_faces,
            face_idx=np.array(fields["face_idx"]), bary=np.array(fields["bary"]),
            confidence=np.array(fields["confidence"]), provenance=fields["provenance"],
            enabled=np.array(fields["enabled"]), weight=np.array(fields["weight"]),
            group_weights=group_weights,
            detected_face_idx=np.array(fields["detected_face_idx"]),
            detected_bary=np.array(fields["detected_bary"]),
        )
    except (ValueError, TypeError) as exc:
        raise InputFileError(path, f"invalid landmarks: {exc}") from exc


# A written ``position`` farther than this (fraction of the scan's size) from the point its
# face + bary give on this scan means the file was made for another scan with as many faces.
POSITION_TOLERANCE = 0.01


def check_positions(doc: dict, lms: LandmarkSet, vertices: np.ndarray, faces: np.ndarray,
                    path: Path | None = None) -> None:
    """InputFileError when the file's ``position`` entries are not where its face + bary put
    the landmarks on this scan (vertices (V,3), faces (F,3)); entries without one are skipped."""
    pos = lms.positions(vertices, faces)
    size = float(np.ptp(np.asarray(vertices, np.float64), axis=0).max())
    for i, e in enumerate(doc["landmarks"]):
        written = e.get("position")
        if written is None or not lms.placed_mask[i]:
            continue
        ok = isinstance(written, list) and len(written) == 3 and all(
            isinstance(x, (int, float)) and np.isfinite(x) for x in written)
        _need(ok, path, f"landmark {i} ({lms.names[i]}): 'position' must be 3 finite numbers")
        off = float(np.linalg.norm(np.asarray(written, np.float64) - pos[i]))
        _need(off <= POSITION_TOLERANCE * size, path,
              f"landmark {i} ({lms.names[i]}) lies {100 * off / size:.2g}% of the scan size "
              "away from where its face and bary put it on this scan: the file was made for "
              "another scan, or its 'position' was edited by hand ('face' and 'bary' place a "
              "landmark; 'position' only checks them: remove it to keep 'face' and 'bary')")


def load_landmarks(path: str | Path, *, num_faces: int | None = None,
                   scan_vertices: np.ndarray | None = None,
                   scan_faces: np.ndarray | None = None) -> LandmarkSet:
    """Read a landmark JSON file; ``num_faces`` (the scan's) guards against the wrong scan, and
    with the scan's vertices (V,3) and faces (F,3) so do the written positions."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(path, f"cannot read landmark file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise InputFileError(path, "not a landmark file (not UTF-8 JSON text)") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    lms = landmarks_from_dict(doc, path, num_faces)
    if scan_vertices is not None and scan_faces is not None:
        check_positions(doc, lms, scan_vertices, scan_faces, path)
    return lms
