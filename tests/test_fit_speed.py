"""The fast paths of the fitting loop compute what the plain ones do; stages end on a plateau."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reflame_app.state.fit_control import stage_rows
from reflame_core.fit.config import FitConfig
from reflame_core.fit.parameterize import LaplacianSolve, laplacian_system
from reflame_core.fit.robust import RobustSettings, robust_factors, robust_factors_torch
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets

TINY = {
    "cameras.num_views": 2, "cameras.resolution": 48, "stages.affine.steps": 2,
    "stages.coarse.steps": 12, "stages.coarse.surface_samples": 2000,
    "stages.refine.steps": 3, "stages.refine.surface_samples": 2000,
    "stages.texture.enabled": False,
}


@pytest.mark.parametrize("count", [9, 10])  # odd and even: np.median averages the middle two
@pytest.mark.parametrize("kernel", ["geman_mcclure", "none"])
def test_robust_factors_on_the_device_match_numpy(count, kernel):
    rng = np.random.default_rng(count)
    residuals = rng.gamma(2.0, 0.01, size=12)
    residuals[[3, 4]] = 0.5  # outliers
    active = np.zeros(12, bool)
    active[rng.choice(12, count, replace=False)] = True
    active[4] = True
    trusted = np.zeros(12, bool)
    trusted[[3, 7]] = True
    confidence = rng.uniform(0.0, 1.0, size=12)
    settings = RobustSettings(kernel, 2.0, 0.02, 0.08, 8.0, 1.0)
    expected, _ = robust_factors(residuals, active, trusted, confidence, settings)
    got = robust_factors_torch(torch.as_tensor(residuals, dtype=torch.float32), active,
                               trusted, confidence, settings)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert got[3] == 1.0  # trusted, although far off
    if kernel == "geman_mcclure":
        assert got[4] < 0.2  # the kernel does down-weight an untrusted outlier


def test_dense_inverse_solve_matches_the_cholesky_solve(flame_template):
    faces = torch.as_tensor(flame_template.faces, dtype=torch.int64)
    matrix = laplacian_system(flame_template.num_vertices, faces, 30.0)
    u = torch.randn(flame_template.num_vertices, 3, dtype=torch.float32)
    weights = torch.randn(flame_template.num_vertices, 3)
    results = []
    for dense in (False, True):
        solve = LaplacianSolve(matrix, dense=dense)
        uu = u.clone().requires_grad_(True)
        (solve(uu) * weights).sum().backward()
        results.append((solve.solve(u), uu.grad))
    (v_chol, g_chol), (v_dense, g_dense) = results
    np.testing.assert_allclose(v_dense.numpy(), v_chol.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g_dense.numpy(), g_chol.numpy(), rtol=1e-4, atol=1e-4)
    # M v = u: the solution is the solution, not only the same as the other solver's.
    residual = (matrix @ v_dense.double().float()) - u
    assert float(residual.abs().max()) < 1e-3


def test_a_known_solution_gives_the_same_vertices_and_gradient(flame_template):
    faces = torch.as_tensor(flame_template.faces, dtype=torch.int64)
    solve = LaplacianSolve(laplacian_system(flame_template.num_vertices, faces, 20.0))
    u = torch.randn(flame_template.num_vertices, 3)
    weights = torch.randn(flame_template.num_vertices, 3)
    grads = []
    for known in (None, solve.solve(u)):
        uu = u.clone().requires_grad_(True)
        v = solve(uu, known)
        (v * weights).sum().backward()
        grads.append((v.detach(), uu.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def _session(head, template, embedding, **overrides) -> FitSession:
    torch.set_num_threads(2)
    cfg = FitConfig.load(preset="fast", overrides={**TINY, **overrides})
    lm = LandmarkTargets.from_points(head.true_landmarks)
    return FitSession(head.scan, template, embedding, lm, cfg, render_backend="torch")


def test_a_stage_ends_when_its_loss_plateaus(small_synthetic_head, flame_template,
                                             landmark_embedding):
    # A tolerance no real gain reaches: the stage ends at its first chance, min_steps.
    session = _session(small_synthetic_head, flame_template, landmark_embedding, **{
        "stages.coarse.min_steps": 5, "stages.coarse.plateau_window": 2,
        "stages.coarse.plateau_tolerance": 10.0, "stages.refine.plateau_window": 0,
    })
    reports = session.run()
    coarse = session.stage("coarse")
    assert coarse.status == "done" and coarse.iteration == 5
    assert coarse.end_reason == "converged"
    assert session.stage("refine").iteration == 3
    assert session.stage("refine").end_reason == "step_limit"
    last = [r for r in reports if r.stage == "coarse"][-1]
    assert last.iteration == 5 and "coarse: converged" in last.event
    assert "stopped at iteration 5 of 12" in last.event
    snap = session.snapshot()
    info = {s.name: s for s in snap.stages}
    assert info["coarse"].end_reason == "converged" and info["coarse"].num_steps == 12
    rows = {r.name: r for r in stage_rows(snap.stages)}
    assert rows["coarse"].end_reason == "converged" and rows["coarse"].progress == 1.0


def test_a_falling_loss_runs_every_step(small_synthetic_head, flame_template,
                                        landmark_embedding):
    # Tolerance 0: only a loss that stops falling altogether ends the stage early; this one
    # falls over the first dozen steps. (After the lattice stage the coarse loss starts near
    # its floor and stops falling within 5 steps: the stage is off here, so the loss falls.)
    session = _session(small_synthetic_head, flame_template, landmark_embedding, **{
        "stages.coarse.min_steps": 4, "stages.coarse.plateau_window": 2,
        "stages.coarse.plateau_tolerance": 0.0, "stages.lattice.enabled": False,
    })
    while session.current is not None and session.current.name != "refine":
        session.step()
    coarse = session.stage("coarse")
    totals = coarse.totals
    assert len(totals) == 12 and totals[-1] < totals[0]
    assert coarse.end_reason == "step_limit"


def test_skipping_a_stage_says_so(small_synthetic_head, flame_template, landmark_embedding):
    session = _session(small_synthetic_head, flame_template, landmark_embedding)
    while session.current.name != "coarse":
        session.step()
    session.step()
    session.skip_stage()
    assert session.stage("coarse").end_reason == "skipped"
    session.restart_stage()  # refine is current: restarting it clears nothing of coarse
    session.goto_stage("coarse")
    assert session.stage("coarse").end_reason is None


def test_uv_raster_through_a_backend_matches_the_cpu_rasterizer(flame_template):
    from reflame_core.render.backends import get_backend
    from reflame_core.texture.uv_raster import rasterize_uv, rasterize_uv_with

    res = 96
    cpu = rasterize_uv(flame_template.uv, flame_template.uv_faces, res, tile=0)
    other = rasterize_uv_with(get_backend("torch", "cpu"), flame_template.uv,
                              flame_template.uv_faces, res, tile=0)
    covered = cpu.covered | other.covered
    same_cover = (cpu.covered == other.covered)[covered].mean()
    assert cpu.covered.sum() > 0.3 * res * res and same_cover > 0.98  # edge texels may differ
    both = cpu.covered & other.covered
    same_face = cpu.face_id[both] == other.face_id[both]
    assert same_face.mean() > 0.97
    np.testing.assert_allclose(other.bary[both][same_face], cpu.bary[both][same_face], atol=2e-3)
    # The barycentrics put the texel centre where the UV layout says it is.
    uv = np.asarray(flame_template.uv, np.float64)
    rows, cols = np.nonzero(both)
    corners = uv[np.asarray(flame_template.uv_faces)[other.face_id[rows, cols]]]
    at = np.einsum("nk,nkc->nc", other.bary[rows, cols], corners)
    expected = np.stack([(cols + 0.5) / res, 1.0 - (rows + 0.5) / res], 1)
    assert np.abs(at - expected).max() < 1e-3


def test_adam_uniform_steps_as_largesteps_does():
    from largesteps.optimize import AdamUniform as Reference

    from reflame_core.fit.parameterize import AdamUniform

    torch.manual_seed(0)
    start = torch.randn(50, 3)
    ours_p, ref_p = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    ours, ref = AdamUniform([ours_p], lr=0.03), Reference([ref_p], lr=0.03)
    for i in range(5):
        grad = torch.randn(50, 3)
        for opt, p in ((ours, ours_p), (ref, ref_p)):
            opt.zero_grad()
            (p * grad).sum().backward()
            opt.step()
        if i == 2:  # an lr change between steps, as the GUI makes
            for opt in (ours, ref):
                opt.param_groups[0]["lr"] = 0.01
    torch.testing.assert_close(ours_p, ref_p)
    saved = {k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in v.items()}
             for k, v in ours.state_dict()["state"].items()}
    ours.zero_grad()
    (ours_p * grad).sum().backward()
    ours.step()
    ours.load_state_dict({"state": saved, "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999)}]})
    assert ours.state[ours_p]["step"] == 5


@pytest.mark.parametrize("key, value", [("stages.coarse.plateau_window", -1),
                                        ("stages.refine.min_steps", -3),
                                        ("stages.coarse.plateau_tolerance", float("nan"))])
def test_convergence_settings_out_of_range_are_refused(key, value):
    from reflame_core.errors import ConfigError

    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        FitConfig.load(overrides={key: value})


def test_presets_set_their_convergence():
    assert FitConfig.load(preset="seed").stage("coarse")["plateau_window"] == 0
    assert FitConfig.load(preset="fast").stage("refine")["plateau_window"] == 0
    default = FitConfig.load().stage("coarse")
    assert 0 < default["min_steps"] < default["steps"] and default["plateau_window"] > 0


def _printed_by_fresh_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter (imports counted from nothing)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return out.stdout.strip()


def test_the_deform_optimiser_does_not_import_torch_dynamo():
    # torch.optim.Optimizer's constructor imports torch._dynamo (seconds, before the first
    # deformation step of every process); the fit's optimiser must not pay that.
    code = ("import sys, torch\n"
            "from reflame_core.fit.parameterize import AdamUniform\n"
            "AdamUniform([torch.zeros(3, requires_grad=True)], lr=0.1)\n"
            "print('torch._dynamo' in sys.modules)\n")
    assert _printed_by_fresh_python(code) == "False"


def test_the_renderer_builds_each_meshs_adjacency_once():
    from reflame_core.render.cameras import OrbitCameras
    from reflame_core.render.renderer import MeshRenderer

    renderer = MeshRenderer(OrbitCameras(num_views=2, resolution=16), backend="torch")
    built = []
    original = renderer.backend.topology
    renderer.backend.topology = lambda tri: built.append(tri.clone()) or original(tri)
    v = torch.rand(4, 3) * 0.5
    fit = torch.tensor([[0, 1, 2], [0, 2, 3]])
    scan = np.array([[0, 1, 3]])
    for _ in range(3):  # the fitting loop: the fit's tensor, now and then the scan's array
        renderer.render(v, fit)
        renderer.render(v, scan)
        renderer.render(v, torch.as_tensor(scan))
    assert len(built) == 2
    fit.add_(0)  # changed in place: built again
    fit[1, 2] = 1
    out = renderer.render(v, fit)
    assert len(built) == 3 and torch.equal(built[-1], fit.to(torch.int32))
    assert out.tri_id.max() <= 1


def test_a_gpu_fit_path_does_not_load_scipys_trees():
    # scipy.spatial costs 0.5-1 s of every `reflame fit` process on the H200 host; only the
    # CPU paths (k-d trees) need it, so the fitting, baking and writing modules load it lazily.
    code = ("import sys\n"
            "import reflame_core.fit.run, reflame_core.fit.session, reflame_core.fit.outputs\n"
            "import reflame_core.fit.setup, reflame_core.texture.stage\n"
            "import reflame_core.landmarks.landmark_json\n"
            "print(sorted(m for m in sys.modules if m.startswith('scipy')))\n")
    assert _printed_by_fresh_python(code) == "[]"
