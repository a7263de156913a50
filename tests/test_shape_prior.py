"""Pieces of issue 13's fit: the edge-stretch prior, the annealed lambda, eyeballs that follow
their sockets and lie on the scan's eye surface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflame_core.fit.config import FitConfig
from reflame_core.fit.eye_surface import exposed_cap
from reflame_core.fit.regions import LEFT_EYEBALL, RIGHT_EYEBALL
from reflame_core.fit.session import FitSession
from reflame_core.fit.shape_prior import ShapePrior, unsupported
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan


@pytest.fixture(scope="module")
def session(small_synthetic_head, flame_template, landmark_embedding) -> FitSession:
    cfg = FitConfig.load(preset="fast", overrides={
        "stages.coarse.steps": 8, "stages.coarse.lambda": 100.0,
        "stages.coarse.lambda_end": 10.0, "stages.coarse.lambda_phases": 4,
        # The socket alone: these tests move the head away from the scan.
        "stages.eyeballs.scan_surface": False})
    return FitSession(small_synthetic_head.scan, flame_template, landmark_embedding,
                      LandmarkTargets.from_points(small_synthetic_head.true_landmarks), cfg,
                      render_backend="torch")


def test_stretch_is_zero_at_the_reference_and_grows_with_scale(session):
    ref = session.template_vertices
    prior = ShapePrior(ref, session.faces, ~session.eyeball_mask)
    assert float(prior.stretch(ref)) == pytest.approx(0.0, abs=1e-12)
    # Moving the template rigidly costs nothing; scaling it by 1.1 costs 0.1^2 per edge.
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert float(prior.stretch(ref @ turn.T + 0.3)) == pytest.approx(0.0, abs=1e-9)
    assert float(prior.stretch(1.1 * ref)) == pytest.approx(0.01, rel=1e-3)
    # The eyeballs' edges do not count.
    moved = ref.clone()
    moved[LEFT_EYEBALL] *= 2.0
    assert float(prior.stretch(moved)) == pytest.approx(0.0, abs=1e-12)


def test_unsupported_vertices_weigh_more():
    verts = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [1.0, 0.0, 0.0]])
    samples = torch.tensor([[0.0, 0.0, 0.01], [0.06, 0.0, 0.0]])
    far = unsupported(verts, samples, 0.1)
    assert far.tolist() == [False, False, True]
    faces = torch.tensor([[0, 1, 2]])
    prior = ShapePrior(verts, faces, torch.ones(3, dtype=torch.bool), 1.0 + 20.0 * far.float())
    # Edges 0-1 (both supported), 0-2 and 1-2 (one end unsupported).
    assert sorted(prior.edge_weight.tolist()) == [1.0, 11.0, 11.0]


def test_lambda_is_annealed_in_phases(session):
    stage = session.stage("coarse")
    seen = []
    for it in range(8):
        stage.iteration = it
        seen.append(stage._lambda_now(session))
    np.testing.assert_allclose(seen, np.repeat([100.0, 46.4159, 21.5443, 10.0], 2), rtol=1e-4)
    stage.iteration = 0


def test_eyeballs_follow_their_sockets(session):
    """The head moved by a known similarity, then stretched near one eye only: each eyeball
    lands where its socket took it (the template's eyeballs under the same motion)."""
    tmpl = session.template_vertices.numpy().astype(np.float64)
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    moved = 1.2 * tmpl @ rot.T + np.array([0.1, -0.2, 0.3])
    expected = moved.copy()
    moved[LEFT_EYEBALL] = moved[RIGHT_EYEBALL] = 0.0  # the deformation leaves them behind
    session.vertices = torch.from_numpy(moved.astype(np.float32))
    losses = session.stage("eyeballs").step(session)
    got = session.vertices.numpy()
    for ball in (LEFT_EYEBALL, RIGHT_EYEBALL):
        np.testing.assert_allclose(got[ball], expected[ball], atol=1e-4)
    assert losses["eyeball_scale"] == pytest.approx(1.2, rel=1e-4)


@pytest.mark.parametrize("shape", ["socket", "sphere"])
def test_eyeballs_under_new_proportions(session, shape):
    """The head made 15% wider and 10% shallower: a "socket" eyeball widens with it (as
    FLAME's linear shape space moves eyeball vertices); a "sphere" eyeball keeps its shape
    and only scales, its centre where the socket took it either way."""
    tmpl = session.template_vertices.numpy().astype(np.float64)
    stretched = tmpl * np.array([1.15, 1.0, 0.9])
    moved = stretched.copy()
    moved[LEFT_EYEBALL] = moved[RIGHT_EYEBALL] = 0.0
    session.vertices = torch.from_numpy(moved.astype(np.float32))
    session.config.data["stages"]["eyeballs"]["shape"] = shape
    try:
        session.stage("eyeballs").step(session)
    finally:
        session.config.data["stages"]["eyeballs"]["shape"] = "socket"
    got = session.vertices.numpy().astype(np.float64)
    for ball in (LEFT_EYEBALL, RIGHT_EYEBALL):
        np.testing.assert_allclose(got[ball].mean(0), stretched[ball].mean(0), atol=1e-4)
        if shape == "socket":
            np.testing.assert_allclose(got[ball], stretched[ball], atol=1e-4)
        else:  # a sphere about its centre, scaled by the cube root of 1.15 x 0.9
            r_tmpl = np.linalg.norm(tmpl[ball] - tmpl[ball].mean(0), axis=1)
            r_got = np.linalg.norm(got[ball] - got[ball].mean(0), axis=1)
            np.testing.assert_allclose(r_got, r_tmpl * (1.15 * 0.9) ** (1 / 3), rtol=1e-4)


def _template_scan_session(template, embedding, eye_shift: np.ndarray | None) -> FitSession:
    """A session whose scan is the template itself, in the template's frame, with both
    eyeballs moved by ``eye_shift`` (3,) or removed (None: a scan that shows no eyes)."""
    verts = template.vertices.astype(np.float64).copy()
    faces = template.faces
    if eye_shift is None:
        faces = faces[(faces < LEFT_EYEBALL.start).all(1)]
    else:
        verts[LEFT_EYEBALL.start:] += eye_shift
    scan = Scan(vertices=verts.astype(np.float32), faces=faces)
    return FitSession(scan, template, embedding, None, FitConfig.load(preset="fast"),
                      render_backend="torch", to_canonical=Similarity())


def _eyeball_step(session: FitSession):
    """The eyeball stage's one iteration, through the session as the CLI and studio run it
    (the head stays the template: the earlier stages are passed over)."""
    session.goto_stage("eyeballs")
    report = session.step()
    assert report.stage == "eyeballs"
    return report


def test_exposed_cap_is_the_front_of_each_eye(flame_template):
    head_faces = flame_template.faces[(flame_template.faces < LEFT_EYEBALL.start).all(1)]
    sizes = []
    for ball in (LEFT_EYEBALL, RIGHT_EYEBALL):
        cap = exposed_cap(flame_template.vertices, ball, head_faces)
        pts = flame_template.vertices[ball].astype(np.float64)
        out = pts[cap] - pts.mean(0)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        assert out.mean(0)[2] > 0.85  # it looks forward
        sizes.append(int(cap.sum()))
    # Between the lids: a fifth of the sphere or so, the same on both sides.
    assert min(sizes) >= 60 and max(sizes) <= 160 and abs(sizes[0] - sizes[1]) <= 10, sizes


@pytest.mark.parametrize("shift_radii", [
    (0.0, -0.04, -0.12),  # 1.5 mm deeper and 0.5 mm lower (an eyeball's radius: ~12 mm)
    (0.0, 0.0, 0.25),  # 3 mm ahead: the cap starts with most of it pairing with the lids
])
def test_eyeballs_move_onto_the_scans_eye_surface(flame_template, landmark_embedding,
                                                  shift_radii):
    """The scan's eyes sit off the template's; the head matches exactly, so the socket alone
    would leave the eyeballs at the template's place. The eye surface between the lids moves
    them most of the way. (The LeePerrySmith bust's eyes sit 0.2-0.27 radii ahead of where
    the socket puts FLAME's.)"""
    radius = float(np.linalg.norm(flame_template.vertices[LEFT_EYEBALL]
                                  - flame_template.vertices[LEFT_EYEBALL].mean(0), axis=1).mean())
    shift = np.array(shift_radii) * radius
    session = _template_scan_session(flame_template, landmark_embedding, shift)
    report = _eyeball_step(session)
    got = session.vertices.numpy().astype(np.float64) - flame_template.vertices
    for ball in (LEFT_EYEBALL, RIGHT_EYEBALL):
        moved = got[ball].mean(0)
        assert abs(moved[2] - shift[2]) < 0.2 * abs(shift[2]), moved / radius
        assert np.linalg.norm(moved - shift) < 0.35 * np.linalg.norm(shift), moved / radius
    assert "socket only" not in (report.event or "")


def test_eyeballs_stay_with_their_socket_where_the_scan_shows_no_eyes(flame_template,
                                                                      landmark_embedding):
    session = _template_scan_session(flame_template, landmark_embedding, None)
    report = _eyeball_step(session)
    got = session.vertices.numpy()
    np.testing.assert_allclose(got[LEFT_EYEBALL.start:],
                               flame_template.vertices[LEFT_EYEBALL.start:], atol=1e-5)
    assert "2 of 2 eyeballs placed from the socket only" in report.event
