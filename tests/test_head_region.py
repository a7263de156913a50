"""A bust's shoulders and chest are left out of the fit, and its face is detected closer up;
a head alone is left as it is (``fit/head_region.py``, ``landmarks/detect.head_frame``)."""

from __future__ import annotations

import numpy as np
import pytest

from reflame_core.fit.config import FitConfig
from reflame_core.fit.head_region import head_faces, neck_opening
from reflame_core.fit.regions import LEFT_EYEBALL
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.geometry.frame import CANONICAL_EXTENT, canonical_frame
from reflame_core.landmarks.detect import head_frame
from reflame_core.synthetic.world import apply_scenario

SEED = 7


@pytest.fixture(scope="module")
def bust(small_synthetic_head):
    return apply_scenario(small_synthetic_head, ("shoulders",), SEED)


def _template_landmarks(template, embedding) -> np.ndarray:
    corners = template.vertices[template.faces[embedding.face_idx]]
    return np.einsum("lk,lkd->ld", embedding.bary, corners)


def _keep(head, template, embedding):
    return head_faces(head.scan.vertices, head.scan.faces, template.vertices, template.faces,
                      _template_landmarks(template, embedding), head.true_landmarks,
                      np.ones(68))


def test_the_neck_opening_lies_below_the_whole_template(flame_template):
    point, normal = neck_opening(flame_template.vertices, flame_template.faces)
    past = (flame_template.vertices[: LEFT_EYEBALL.start] - point) @ normal
    assert normal[1] < -0.9  # down the neck
    assert past.max() == pytest.approx(0.0, abs=1e-6) and past.min() < -3.0


def test_a_bust_loses_its_body_and_keeps_its_head(bust, flame_template, landmark_embedding):
    keep = _keep(bust, flame_template, landmark_embedding)
    canon = bust.to_canonical.apply(bust.scan.vertices)  # template frame and units
    y = canon[bust.scan.faces].mean(1)[:, 1]
    neck_end = bust.deformed_vertices[:, 1].min()
    height = np.ptp(bust.deformed_vertices[:, 1])
    assert keep is not None
    # The body well below the neck goes; the head, the face and the upper neck all stay.
    assert not keep[y < neck_end - 0.15 * height].any()
    assert keep[y > neck_end + 0.25 * height].all()


def test_a_head_alone_is_left_whole(small_synthetic_head, flame_template, landmark_embedding):
    head = small_synthetic_head
    assert _keep(head, flame_template, landmark_embedding) is None
    cut = apply_scenario(head, ("cut_neck",), SEED)
    assert _keep(cut, flame_template, landmark_embedding) is None


def test_the_session_fits_the_head_and_keeps_the_scan(bust, flame_template, landmark_embedding):
    session = FitSession(bust.scan, flame_template, landmark_embedding,
                         LandmarkTargets.from_points(bust.true_landmarks),
                         FitConfig.load(preset="fast"), render_backend="torch")
    assert session.scan is bust.scan
    kept = len(session.fitted_scan.faces)
    assert len(session.scan_canonical.faces) == kept < len(bust.scan.faces)
    report = session.step()
    assert "below the neck" in (report.event or "")
    # The robust kernels' unit is the head's size, not the body's.
    assert session.head_height < 0.8 * CANONICAL_EXTENT


def test_detection_closes_in_on_a_small_face(bust, small_synthetic_head):
    for head, zoom in ((bust, True), (small_synthetic_head, False)):
        sim = canonical_frame(head.scan.vertices)
        points = sim.apply(head.true_landmarks)
        closer = head_frame(points, sim)
        assert (closer is not None) == zoom
        if zoom:
            # The face is centred and the head as FLAME would have it spans the canonical
            # extent: the landmarks spread wider than in the body's frame.
            near = closer.apply(head.true_landmarks)
            assert near.std(0).sum() > 1.5 * points.std(0).sum()
            assert np.abs(near.mean(0)[:2]).max() < 0.3 * CANONICAL_EXTENT
    missing = np.full((68, 3), np.nan)
    assert head_frame(missing, canonical_frame(bust.scan.vertices)) is None


def test_a_bust_is_detected_closer_up(bust, monkeypatch):
    from reflame_core.landmarks import detect
    from reflame_core.synthetic.scoring import landmark_errors

    def inner_error() -> float:
        lms = detect.detect_landmarks(bust.scan, backend="mediapipe",
                                      to_canonical=canonical_frame(bust.scan.vertices))
        errors = landmark_errors(bust, lms.positions(bust.scan.vertices, bust.scan.faces)[:68])
        return float(np.median(errors[17:]))

    closer = inner_error()
    monkeypatch.setattr(detect, "ZOOM_BELOW", 0.0)  # one pass, in the body's frame
    assert closer < 0.01 and closer < 0.8 * inner_error()
