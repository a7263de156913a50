"""FLAME's jaw: skinning weights from the template's topology, and the jaw stage that turns it
to a scan's open mouth."""

from __future__ import annotations

import numpy as np
import pytest
from test_fit_synthetic import small_session

from reflame_core.fit import jaw
from reflame_core.synthetic.expression import Expression
from reflame_core.synthetic.head import SMALL_TARGET_VERTICES, make_synthetic_head


def test_jaw_weights_split_the_lips_along_the_mouth_hole(flame_template,
                                                          landmark_embedding) -> None:
    v, f = flame_template.vertices, flame_template.faces
    lmk = landmark_embedding.points(v, f)
    weights = jaw.jaw_weights(v, f, lmk)
    upper, lower = jaw.mouth_rims(v, f, lmk[jaw.INNER_LIPS].mean(0))
    assert len(upper) > 4 and len(lower) > 4
    # Each rim goes with its lip; only next to the corners do the two blend.
    assert np.median(weights[upper]) == 0.0 and weights[upper].mean() < 0.15
    assert np.median(weights[lower]) == 1.0 and weights[lower].mean() > 0.85
    # Each inner-lip landmark's triangle goes with its own lip, though the lips touch there.
    on = weights[f[landmark_embedding.face_idx]].mean(1)
    assert (on[61:64] < 0.05).all() and (on[65:68] > 0.95).all()
    # The skull and eyeballs stay; the chin goes; the cheeks lie in between.
    assert weights[v[:, 1] > lmk[jaw.NOSE_BASE, 1]].max() == 0.0
    assert on[8] == 1.0
    cheek = ((np.abs(v[:, 0]) > 0.5) & (v[:, 1] < lmk[33, 1]) & (v[:, 1] > lmk[8, 1])
             & (v[:, 2] > lmk[[4, 12], 2].mean()))
    assert 0.05 < np.median(weights[cheek]) < 0.95


def test_turn_jaw_is_a_rotation_about_the_hinge() -> None:
    joint = np.array([0.0, 0.2, -0.4])
    points = np.array([[0.3, -0.8, 0.4], [0.1, 0.5, 0.2]])
    out = jaw.turn_jaw(points, np.array([1.0, 0.0]), joint, 20.0)
    np.testing.assert_allclose(out[1], points[1])
    np.testing.assert_allclose(np.linalg.norm(out[0] - joint), np.linalg.norm(points[0] - joint))
    assert out[0, 0] == points[0, 0] and out[0, 1] < points[0, 1] and out[0, 2] < points[0, 2]


def test_lips_gap_reads_the_inner_lips_against_the_eyes() -> None:
    indices = np.array([36, 45, 61, 62, 63, 65, 66, 67])
    points = np.zeros((8, 3))
    points[1, 0] = 2.0  # eye corners 2 apart
    points[5:, 1] = -0.4  # lower inner lip 0.4 below the upper
    assert jaw.lips_gap(indices, points) == pytest.approx(0.2)
    assert jaw.lips_gap(indices[1:], points[1:]) is None  # an eye corner missing


def _open_mouth_head(flame_template, facescape_texture, landmark_embedding, degrees: float):
    face = Expression(jaw_deg=degrees, corners=0.0, brows=0.0, mouth_inside=False,
                      joint_below=0.05, joint_behind=0.0, weight_power=1.3)
    return make_synthetic_head(
        flame_template, facescape_texture, landmark_embedding, seed=0,
        target_vertices=SMALL_TARGET_VERTICES,
        expression=face.deformation(flame_template.faces, landmark_embedding))


def _lower_face_error(session, head) -> float:
    """Mean distance of the lower lip and chin landmarks (iBUG 5-11, 55-59, 65-67) to the
    truth, fraction of head height."""
    lower = np.r_[5:12, 55:60, 65:68]
    height = np.ptp(head.true_vertices, axis=0).max()
    err = np.linalg.norm(session.landmarks_in_scan_frame() - head.true_landmarks, axis=1)
    return float(err[lower].mean() / height)


@pytest.mark.parametrize("degrees", [16.0, 0.0])
def test_jaw_stage_turns_the_jaw_to_an_open_mouth(flame_template, facescape_texture,
                                                  landmark_embedding, degrees) -> None:
    """An open mouth (the generator's joint and weights differ from the stage's) is met
    within a few degrees; a closed one is left closed."""
    head = _open_mouth_head(flame_template, facescape_texture, landmark_embedding, degrees)
    s = small_session(head, flame_template, landmark_embedding)
    s.run(1 + s.stage("affine").num_steps(s))
    assert s.current.name == "jaw"
    before = _lower_face_error(s, head)
    report = s.step()
    stage = s.stage("jaw")
    assert report.stage == "jaw" and stage.status == "done"
    if degrees:
        assert abs(stage.degrees - degrees) < 4.0, stage.degrees
        assert s.mouth_open()
        assert _lower_face_error(s, head) < 0.4 * before
        assert "jaw: turned" in report.event
    else:
        assert stage.degrees == 0.0 and "the lips touch: left closed" in report.event
        assert not s.mouth_open()
