"""The affine stage recovers known head proportions (per-axis scale) after the rigid stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fit_synthetic import small_session, vertex_error

from reflame_core.synthetic.conditions import scale_axes

APPLIED = np.array([1.12, 0.88, 1.08])  # width, height, depth


def total_scales(session) -> np.ndarray:
    """(3,) per-axis scale from template to scan units: rigid times affine, over the scan's
    own canonical normalisation (which differs between two scans)."""
    return session.rigid.scale * session.stage("affine").scales / session.to_canonical.scale


def rigid_then_affine(head, template, embedding) -> tuple[float, float, np.ndarray]:
    """Vertex error after rigid, after rigid + affine, and the recovered total scales."""
    s = small_session(head, template, embedding)
    assert s.step().stage == "rigid"
    after_rigid = vertex_error(s, head)
    steps = s.stage("affine").num_steps(s)
    reports = s.run(steps)
    assert [r.stage for r in reports] == ["affine"] * steps
    assert s.stage("affine").status == "done"
    return after_rigid, vertex_error(s, head), total_scales(s)


def test_affine_recovers_applied_proportions(small_synthetic_head, flame_template,
                                            landmark_embedding):
    head = small_synthetic_head
    stretched = scale_axes(head, APPLIED)
    _, _, base = rigid_then_affine(head, flame_template, landmark_embedding)
    rigid, affine, scales = rigid_then_affine(stretched, flame_template, landmark_embedding)
    assert affine < 0.7 * rigid, f"rigid {rigid:.4f} -> affine {affine:.4f}"
    # The synthetic head has proportions of its own: compare against the unstretched one.
    np.testing.assert_allclose(scales / base, APPLIED, rtol=0.03)


def test_affine_survives_wrong_landmarks(small_synthetic_head, flame_template,
                                        landmark_embedding):
    """Eight landmarks thrown 20% of the head height away are trimmed, not followed."""
    head = scale_axes(small_synthetic_head, APPLIED)
    head.true_landmarks = head.true_landmarks.copy()
    height = np.ptp(head.true_vertices, axis=0).max()
    clean = rigid_then_affine(head, flame_template, landmark_embedding)
    rng = np.random.default_rng(3)
    bad = rng.choice(68, 8, replace=False)
    head.true_landmarks[bad] += 0.2 * height * rng.normal(size=(8, 3)) / np.sqrt(3)
    rigid, affine, scales = rigid_then_affine(head, flame_template, landmark_embedding)
    assert affine < 0.7 * rigid
    np.testing.assert_allclose(scales, clean[2], rtol=0.03)


def test_failed_affine_step_is_undone(small_synthetic_head, flame_template, landmark_embedding,
                                      monkeypatch):
    """A step that raises after moving the transform leaves the stage and vertices as before."""
    s = small_session(small_synthetic_head, flame_template, landmark_embedding)
    s.run(2)  # rigid, affine 1
    affine = s.current
    before, vertices = affine.save_state(), s.vertices.clone()
    original = type(affine).step

    def step_then_fail(self, session):
        original(self, session)
        raise RuntimeError("after the solve")

    monkeypatch.setattr(type(affine), "step", step_then_fail)
    with pytest.raises(RuntimeError, match="after the solve"):
        s.step()
    np.testing.assert_array_equal(affine.save_state(), before)
    assert torch.equal(s.vertices, vertices) and affine.iteration == 1
    monkeypatch.setattr(type(affine), "step", original)
    s.step()
    assert not np.array_equal(affine.save_state(), before) and affine.iteration == 2
