"""Issue 13's accuracy targets on small, fast heads of the benchmark world (CPU, seconds each).

Four 4k-vertex heads: one rotated, one of other proportions, one whose landmarks are the
true ones except 10% of them thrown 10% of head height away, and one with its jaw open by 14
degrees (seed 0's expression). The full pipeline (rigid, affine, jaw, coarse, refine,
eyeballs) runs as preset ``fast`` does, lightened for CI: 4 views of
64² and fewer steps and surface samples.
Errors are distances to the true FLAME vertices / head height (``synthetic/scoring.py``).
Targets: mean <= 0.3% with true landmarks (and with the displaced ones, which the robust
landmark terms should make as good), p95 <= 2%; eyeballs are scored on their own.

Measured (2-core CPU): mean 0.210% / 0.196% / 0.202%, p95 0.67% / 0.62% / 0.62%, eyeballs
0.17% / 0.18% / 0.16% (rotated / proportions / wrong landmarks); the open mouth 0.186%, p95
0.50% (0.315% before the rigid and affine stages left the open jaw out); eyeballs placed from their
sockets alone (``stages.eyeballs.scan_surface`` off) 0.18% / 0.15% / 0.18%. A render-free
variant (surface terms only) was faster but missed: 0.31% / 0.31% / 0.28%.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflame_core.fit.config import FitConfig
from reflame_core.fit.regions import region_labels
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.synthetic.head import SMALL_TARGET_VERTICES
from reflame_core.synthetic.scoring import summarize_vertices, vertex_errors
from reflame_core.synthetic.world import make_world_head
from reflame_core.synthetic.wrong_landmarks import displaced_landmarks

LIGHT = {
    "cameras.num_views": 4, "cameras.resolution": 64, "cameras.azimuth_range": 120.0,
    "stages.coarse.steps": 100, "stages.coarse.surface_samples": 4000,
    "stages.refine.steps": 40, "stages.refine.surface_samples": 4000,
    "stages.texture.enabled": False,
}
CASES = {"rotated": ("rotation", False), "proportions": ("proportions", False),
         "wrong_landmarks": ("base", True), "open_mouth": ("expression", False)}
SEED = 0  # not a scored (1001+) or tuning (2001+) seed of the benchmark


@pytest.fixture(scope="module")
def scores(flame_template, landmark_embedding, facescape_texture) -> dict:
    torch.set_num_threads(2)
    labels = region_labels(flame_template, landmark_embedding)
    out = {}
    for case, (scenario, displace) in CASES.items():
        head = make_world_head(flame_template, facescape_texture, landmark_embedding,
                               scenario, SEED, target_vertices=SMALL_TARGET_VERTICES)
        points = head.true_landmarks
        if displace:
            points, moved = displaced_landmarks(head, 0.1, 0.1, np.random.default_rng(SEED))
            assert len(moved) == 7
        session = FitSession(head.scan, flame_template, landmark_embedding,
                             LandmarkTargets.from_points(points),
                             FitConfig.load(preset="fast", overrides=LIGHT),
                             render_backend="torch")
        session.run()
        errors = vertex_errors(head, session.vertices_in_scan_frame())
        out[case] = summarize_vertices(errors, head.vertex_present, labels)
    print({c: (s["mean"], s["p95"], s["eyeballs"]["mean"]) for c, s in out.items()})
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_mean_vertex_error_within_target(scores, case):
    assert scores[case]["mean"] <= 0.003, scores[case]


@pytest.mark.parametrize("case", list(CASES))
def test_p95_vertex_error_within_target(scores, case):
    assert scores[case]["p95"] <= 0.02, scores[case]


@pytest.mark.parametrize("case", list(CASES))
def test_eyeballs_follow_the_fit(scores, case):
    # Before the eyeballs followed their sockets they were the worst region on the benchmark
    # (0.52% mean on the scored heads); 0.26-0.32% since.
    assert scores[case]["eyeballs"]["mean"] <= 0.0045, scores[case]["eyeballs"]


def test_a_scan_cut_open_is_compared_only_where_its_outside_is_seen(data_dir) -> None:
    """From behind, a head without its back shows the inside of its face: those pixels are
    not covered (the depth and dense terms skip them), whichever way the scan is wound."""
    from reflame_core.fit.targets import build_scan_targets
    from reflame_core.render.cameras import OrbitCameras
    from reflame_core.render.renderer import MeshRenderer
    from reflame_core.synthetic.world import load_world_assets

    a = load_world_assets(data_dir)
    cams = OrbitCameras(num_views=3, azimuth_range=180.0, resolution=96)  # back, front, back
    renderer = MeshRenderer(cams, "torch", "cpu")

    def covered_fraction(scenario: str, flip: bool = False) -> np.ndarray:
        head = make_world_head(a.template, a.texture, a.embedding, scenario, 2001,
                               target_vertices=SMALL_TARGET_VERTICES)
        scan = head.scan.transformed(head.to_canonical)
        if flip:
            scan = type(scan)(**{**scan.__dict__, "faces": scan.faces[:, ::-1].copy()})
        t = build_scan_targets(scan, renderer, [0, 1], 1000, "cpu")
        hit = t.mask[..., 0] > 0.5
        return ((t.covered[..., 0] & hit).sum((1, 2)) / hit.sum((1, 2))).numpy()

    whole, cut, cut_flipped = covered_fraction("base"), covered_fraction("no_back"), \
        covered_fraction("no_back", flip=True)
    assert whole.min() > 0.97  # a closed head: its outside everywhere
    assert cut[1] > 0.97 and cut[0] < 0.6  # front seen whole; from behind, mostly inside
    np.testing.assert_allclose(cut_flipped, cut, atol=0.02)


def test_the_silhouette_term_leaves_a_cut_away_back_alone(
        flame_template, landmark_embedding, facescape_texture) -> None:
    """A front-only scan's outline ends where the scan does, not where the head does: the
    mask term leaves out pixels of the fit's unsupported surface (its back, which no scan
    sample is near), so it stops pulling that back in towards the cut, and pulls the rest as
    before. (With the back pulled in, the GPU benchmark's no_back heads ended 1.8% of head
    height off there with true landmarks.)"""
    from reflame_core.fit.stages import deform

    head = make_world_head(flame_template, facescape_texture, landmark_embedding, "no_back",
                           SEED, target_vertices=SMALL_TARGET_VERTICES)
    session = FitSession(head.scan, flame_template, landmark_embedding,
                         LandmarkTargets.from_points(head.true_landmarks),
                         FitConfig.load(preset="fast", overrides=LIGHT), render_backend="torch")
    while session.current.name != "coarse":
        session.step()
    stage = session.current
    stage.begin(session)
    unsupported = stage.unsupported
    assert 0.1 < float(unsupported.float().mean()) < 0.4  # the back, cut away

    only_mask = {**stage.params(session), **dict.fromkeys(deform.WEIGHTS.values(), 0.0),
                 "w_mask": 1.0}

    def mask_term(marked: torch.Tensor) -> tuple[float, torch.Tensor]:
        verts = session.vertices.detach().clone().requires_grad_(True)
        value = deform.evaluate_terms(session, verts, only_mask, marked)["mask"]
        (grad,) = torch.autograd.grad(value, verts)
        return float(value), grad.norm(dim=1)

    value, grad = mask_term(unsupported)
    value_all, grad_all = mask_term(torch.zeros_like(unsupported))
    assert value < 0.2 * value_all  # the missing back was most of the mismatch
    assert grad[unsupported].sum() < 0.35 * grad_all[unsupported].sum()
    assert grad[~unsupported].sum() == pytest.approx(grad_all[~unsupported].sum(), rel=0.1)
