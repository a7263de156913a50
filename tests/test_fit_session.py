"""Stepping semantics of FitSession, with real (tiny) iterations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflame_core.fit.config import FitConfig
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets

TINY = {
    "cameras.num_views": 2, "cameras.resolution": 48, "stages.affine.steps": 2,
    "stages.lattice.steps": 1,
    "stages.coarse.steps": 6, "stages.coarse.surface_samples": 2000,
    "stages.refine.steps": 3, "stages.refine.surface_samples": 2000,
    "stages.texture.enabled": False,
}


@pytest.fixture
def session(small_synthetic_head, flame_template, landmark_embedding) -> FitSession:
    torch.set_num_threads(2)
    cfg = FitConfig.load(preset="fast", overrides=TINY)
    lm = LandmarkTargets.from_points(small_synthetic_head.true_landmarks)
    return FitSession(small_synthetic_head.scan, flame_template, landmark_embedding, lm, cfg,
                      render_backend="torch")


def test_one_step_is_one_iteration_through_all_stages(session):
    names = [s.name for s in session.stages if s.enabled(session)]
    seen = []
    while not session.done:
        r = session.step()
        seen.append((r.stage, r.iteration))
    expected = [("rigid", 1), ("affine", 1), ("affine", 2), ("jaw", 1), ("lattice", 1)]
    expected += [("coarse", i) for i in range(1, 7)]
    expected += [("refine", i) for i in range(1, 4)] + [("eyeballs", 1)]
    assert seen == expected
    assert names == ["rigid", "affine", "jaw", "lattice", "coarse", "refine", "eyeballs"]
    assert all(s.status == "done" for s in session.stages if s.name in names)
    assert session.step().event == "all stages done"


def test_deterministic_for_a_seed(small_synthetic_head, flame_template, landmark_embedding,
                                  session):
    session.run(5)
    cfg = FitConfig.load(preset="fast", overrides=TINY)
    lm = LandmarkTargets.from_points(small_synthetic_head.true_landmarks)
    other = FitSession(small_synthetic_head.scan, flame_template, landmark_embedding, lm, cfg,
                       render_backend="torch")
    other.run(5)
    np.testing.assert_allclose(other.snapshot().vertices, session.snapshot().vertices, atol=1e-6)


def test_skip_restart_goto(session):
    session.run(7)  # rigid, 2 affine, jaw, lattice, 2 coarse
    after_rigid = session.stage("coarse").start_vertices.clone()
    assert session.current.name == "coarse" and session.current.iteration == 2
    session.restart_stage()
    assert session.current.name == "coarse" and session.current.iteration == 0
    assert torch.equal(session.vertices, after_rigid)
    session.skip_stage()
    assert session.stage("coarse").status == "skipped"
    assert session.current.name == "refine"
    session.goto_stage("rigid")
    assert [s.status for s in session.stages[:4]] == ["pending"] * 4
    assert session.step().stage == "rigid"


def test_param_change_between_steps(session):
    session.run(6)  # rigid, 2 affine, jaw, lattice, coarse 1
    coarse = session.current
    old_matrix = coarse.matrix
    session.set_param("coarse", "lambda", 5.0)
    assert coarse.matrix is not old_matrix  # the Large-Steps system was rebuilt
    np.testing.assert_allclose(coarse.vertices().detach(), session.vertices, atol=1e-4)
    session.set_param("coarse", "lr", 0.001)
    assert coarse.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    session.set_param("coarse", "steps", 3)  # 1 done: two more end the stage
    session.run(2)
    assert session.current.name == "refine"
    with pytest.raises(KeyError):
        session.set_param("coarse", "no_such_param", 1)


def test_nan_is_rolled_back_and_lr_halved(session):
    session.run(7)  # rigid, 2 affine, jaw, lattice, coarse 1-2
    before = session.vertices.clone()
    lr = session.current.optimizer.param_groups[0]["lr"]
    with torch.no_grad():
        session.landmark_points[0, 0] = float("nan")
    report = session.step()
    assert report.event and "rolled back" in report.event
    assert "coarse: non-finite loss in landmark_3d at iteration 3: step skipped" in report.event
    assert torch.equal(session.vertices, before)
    assert session.current.optimizer.param_groups[0]["lr"] == pytest.approx(lr / 2)
    assert torch.isfinite(session.vertices).all()
    assert report.iteration == 3 and session.current.iteration == 2  # retried, not counted
    moments = session.current.optimizer.state[session.current.u]
    assert all(torch.isfinite(m).all() for m in moments.values() if torch.is_tensor(m))


def test_landmarks_can_change_between_steps(session, small_synthetic_head):
    session.run(6)  # rigid, 2 affine, jaw, lattice, coarse 1
    pts = small_synthetic_head.true_landmarks[:30]
    session.set_landmarks(LandmarkTargets.from_points(pts, np.arange(30)))
    r = session.step()
    assert np.isfinite(r.losses["landmark_3d"])
    session.set_landmarks(None)
    assert "landmark_3d" not in session.step().losses


def test_snapshot_is_a_copy(session):
    session.run(2)
    snap = session.snapshot()
    snap.vertices[:] = 0
    assert session.vertices.abs().sum() > 0
    assert snap.stages[1].name == "affine" and snap.stages[1].iteration == 1


def test_erode_drops_the_rim_only():
    from reflame_core.fit.losses import erode

    m = torch.zeros(1, 8, 8, 1, dtype=torch.bool)
    m[0, 2:7, 1:6] = True
    e = erode(m)
    assert e[0, 3:6, 2:5].all() and e.sum() == 9
    assert not (e & ~m).any()
