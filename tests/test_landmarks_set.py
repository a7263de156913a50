"""LandmarkSet editing model (undo/redo), JSON round trip and bad-file errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reflame_core.errors import InputFileError
from reflame_core.landmarks.definitions import NUM_IBUG, landmark_definitions, load_index_table
from reflame_core.landmarks.landmark_json import load_landmarks, save_landmarks
from reflame_core.landmarks.landmark_set import LandmarkSet

NUM_FACES = 500


def _set(extras: tuple[str, ...] = ("ear_left",)) -> LandmarkSet:
    rng = np.random.default_rng(0)
    names = landmark_definitions().ibug_names + extras
    n = len(names)
    bary = rng.dirichlet(np.ones(3), n)
    face = rng.integers(0, NUM_FACES, n)
    face[5] = -1  # one landmark the detector missed
    return LandmarkSet(names=names, num_faces=NUM_FACES, face_idx=face, bary=bary,
                       confidence=rng.uniform(0, 1, n))


def test_definitions_and_mediapipe_table():
    defs = landmark_definitions()
    assert len(defs.ibug_names) == NUM_IBUG and defs.groups[:17] == ("contour",) * 17
    assert defs.groups[36:48] == ("eyes",) * 12 and defs.groups[48:68] == ("lips",) * 20
    table = load_index_table("mediapipe")
    assert table.matrix.shape == (NUM_IBUG + 2, 478)
    np.testing.assert_allclose(table.matrix.sum(1), 1.0, atol=1e-6)


def test_queries_unplaced_and_weights():
    lms = _set()
    assert not lms.placed_mask[5] and not lms.enabled_mask[5] and lms.weights[5] == 0
    v = np.random.default_rng(1).normal(size=(300, 3))
    f = np.random.default_rng(2).integers(0, 300, (NUM_FACES, 3))
    pos = lms.positions(v, f)
    assert np.isnan(pos[5]).all() and np.isfinite(np.delete(pos, 5, 0)).all()
    expected = lms.bary[0] @ v[f[lms.face_idx[0]]]
    np.testing.assert_allclose(pos[0], expected)
    assert list(lms.ibug_indices[:3]) == [0, 1, 2] and lms.ibug_indices[-1] == -1
    with pytest.raises(ValueError):
        lms.positions(v, f[:10])


def test_edits_undo_redo_reset():
    lms = _set()
    before = lms.face_idx.copy()
    lms.move("nose_bridge_0", 7, [0.2, 0.3, 0.5])
    i = lms.index("nose_bridge_0")
    assert lms.face_idx[i] == 7 and lms.provenance[i] == "edited"
    lms.set_enabled(3, False)
    lms.set_weight(4, 2.5)
    lms.set_group_weight("lips", 0.5)
    assert not lms.enabled_mask[3] and lms.weights[4] == pytest.approx(2.5)
    assert lms.weights[50] == pytest.approx(0.5 * lms.weight[50])
    for _ in range(3):
        lms.undo()
    assert lms.enabled[3] and lms.weight[4] == 1.0 and lms.group_weights["lips"] == 1.0
    assert lms.face_idx[i] == 7
    lms.undo()
    np.testing.assert_array_equal(lms.face_idx, before)
    assert lms.provenance[i] == "detected" and not lms.can_undo
    lms.redo()
    lms.redo()
    assert lms.face_idx[i] == 7 and not lms.enabled[3]
    lms.reset(i)
    assert lms.face_idx[i] == before[i] and lms.provenance[i] == "detected"
    lms.move(5, 9, [1, 0, 0])  # placing a missed landmark enables it
    assert lms.enabled_mask[5]
    lms.undo()
    assert not lms.placed_mask[5]
    with pytest.raises(ValueError):
        lms.set_enabled(5, True)  # nothing to enable: not placed
    with pytest.raises(ValueError):
        lms.move(0, NUM_FACES, [1, 0, 0])
    with pytest.raises(ValueError):
        lms.move(0, 1, [0.5, 0.6, 0.2])
    with pytest.raises(KeyError):
        lms.set_group_weight("cheeks", 1.0)


def test_json_round_trip(tmp_path):
    lms = _set()
    lms.move(10, 3, [0.1, 0.1, 0.8])
    lms.set_enabled(20, False)
    lms.set_group_weight("brows", 0.25)
    path = tmp_path / "lms.json"
    save_landmarks(path, lms)
    back = load_landmarks(path, num_faces=NUM_FACES)
    assert back.names == lms.names
    np.testing.assert_array_equal(back.face_idx, lms.face_idx)
    np.testing.assert_allclose(back.bary, lms.bary)
    np.testing.assert_array_equal(back.enabled, lms.enabled)
    np.testing.assert_allclose(back.weights, lms.weights)
    assert back.provenance == lms.provenance
    back.reset(10)  # the detector's point survives the round trip
    assert back.face_idx[10] == lms.detected_face_idx[10]


def _write(tmp_path, doc) -> str:
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{ not json", "not valid JSON (line 1"),
    (lambda d: {**d, "format": "something"}, "not a landmark file"),
    (lambda d: {**d, "version": 99}, "newer than this program"),
    (lambda d: {**d, "landmarks": d["landmarks"][:10]}, "at least the 68"),
    (lambda d: d["landmarks"][3].update(face=10**6) or d, "landmark 3 (contour_03): 'face'"),
    (lambda d: d["landmarks"][4].update(bary=[1, 1, 1]) or d, "sum to 1"),
    (lambda d: d["landmarks"][4].update(bary="x") or d, "list of 3 numbers"),
    (lambda d: d["landmarks"][6].update(weight=-1) or d, "'weight' must be a number >= 0"),
    (lambda d: d["landmarks"][6].update(weight="heavy") or d, "got 'heavy'"),
    (lambda d: d["landmarks"][0].update(name="chin") or d,
     "landmark 0 is 'chin', expected 'contour_00'"),
    (lambda d: {**d, "group_weights": {"nose": "x"}}, "'group_weights' must map"),
])
def test_bad_json_names_file_and_problem(tmp_path, mutate, message):
    good = tmp_path / "good.json"
    save_landmarks(good, _set())
    doc = json.loads(good.read_text())
    path = _write(tmp_path, mutate(doc))
    with pytest.raises(InputFileError) as err:
        load_landmarks(path)
    assert path in str(err.value) and message in str(err.value)


def test_wrong_scan_and_missing_file(tmp_path):
    path = tmp_path / "lms.json"
    save_landmarks(path, _set())
    with pytest.raises(InputFileError, match="this scan has 12"):
        load_landmarks(path, num_faces=12)
    with pytest.raises(InputFileError, match="cannot read"):
        load_landmarks(tmp_path / "missing.json")
