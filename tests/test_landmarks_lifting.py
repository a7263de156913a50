"""Lifting 2D points onto the surface, fusing views, index tables applied in 3D and fitted."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from reflame_core.errors import InputFileError
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.landmarks.definitions import (
    NUM_IBUG,
    IndexTable,
    landmark_definitions,
    read_index_table,
    write_index_table,
)
from reflame_core.landmarks.detector import Detection2D
from reflame_core.landmarks.lifting import fuse_views, lift_points, lift_views
from reflame_core.landmarks.table_fit import fit_index_table
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer
from reflame_core.resources import resources_dir


@pytest.fixture(scope="module")
def rendered(flame_template):
    cams = OrbitCameras(num_views=3, azimuth_range=30.0, resolution=192)
    v, f = flame_template.vertices.astype(np.float32), flame_template.faces.astype(np.int64)
    out = MeshRenderer(cams, backend="torch").render(torch.from_numpy(v), f)
    pix, depth = cams.project(v.astype(np.float64))
    return cams, v.astype(np.float64), f, out.tri_id.numpy(), pix, depth


def _surface_samples(v, f, tri_id, pix, view, rng, n=200):
    """Random points inside triangles visible in ``view``: (n,3) world, (n,2) pixels."""
    visible = np.unique(tri_id[view][tri_id[view] >= 0])
    faces = rng.choice(visible, n)
    bary = rng.dirichlet(np.full(3, 4.0), n)  # away from the edges
    world = np.einsum("nc,ncd->nd", bary, v[f[faces]])
    return world, faces


def test_lift_points_lands_on_the_rendered_surface_point(rendered):
    cams, v, f, tri_id, pix, depth = rendered
    rng = np.random.default_rng(0)
    world, _ = _surface_samples(v, f, tri_id, pix, 1, rng)
    p2, d2 = cams.project(world)
    face, bary = lift_points(p2[1], tri_id[1], pix[1], depth[1], f)
    assert (face >= 0).mean() > 0.97
    got = np.einsum("nc,ncd->nd", bary[face >= 0], v[f[face[face >= 0]]])
    err = np.linalg.norm(got - world[face >= 0], axis=1)
    # Front-most samples come back exactly (sub-pixel); a few sit behind an occluding fold.
    assert np.median(err) < 1e-6 and np.mean(err < 1e-4) > 0.9
    # Absent or far-off points are not placed.
    face, bary = lift_points(np.array([[np.nan, 3.0], [1.0, 1.0], [-50.0, 10.0]]), tri_id[1],
                             pix[1], depth[1], f)
    assert (face == -1).all() and np.isnan(bary).all()


def test_points_lift_onto_triangles_smaller_than_a_pixel():
    """A scan of a million faces renders each triangle a fraction of a pixel wide: a point
    seldom lies inside the triangle drawn at its pixel. It must still be placed, on the
    surface under it (within a pixel), not dropped."""
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=7, radius=1.2)
    v, f = np.asarray(m.vertices), np.asarray(m.faces, np.int64)
    cams = OrbitCameras(num_views=1, azimuth_range=0.0, resolution=160)
    tri_id = MeshRenderer(cams, backend="torch").render(
        torch.as_tensor(v, dtype=torch.float32), f).tri_id.numpy()[0]
    pix, depth = cams.project(v)
    rng = np.random.default_rng(0)
    points = 80.0 + rng.uniform(-40, 40, (200, 2))  # inside the sphere's disc
    face, bary = lift_points(points, tri_id, pix[0], depth[0], f)
    assert (face >= 0).all()
    got = np.einsum("nc,ncd->nd", bary, v[f[face]])
    back, _ = cams.project(got)
    assert np.abs(back[0] - points).max() < 1.0


def test_fuse_views_rejects_an_outlier_view(rendered):
    cams, v, f, tri_id, pix, depth = rendered
    rng = np.random.default_rng(1)
    world, _ = _surface_samples(v, f, tri_id, pix, 1, rng, n=5)
    world = world[np.abs(world[:, 0]) < 0.2]  # near the mid-plane: every view may see them
    p2, _ = cams.project(world)
    names = tuple(f"p{i}" for i in range(len(world)))
    dets = [Detection2D(names, p2[b].copy(), np.ones(len(world))) for b in range(3)]
    dets[0].points[:] += 40.0  # one view's detector is badly off
    hits = lift_views(dets, tri_id, pix, depth, cams.camera_positions(), v, f, names)
    fused = fuse_views(hits, np.ones(hits.face.shape, bool), MeshQuery(v, f), 3.19)
    err = np.linalg.norm(fused.points - world, axis=1)
    assert err.max() < 0.02, err
    assert (fused.num_views <= 2).all()


def test_index_table_applies_in_3d_and_round_trips(tmp_path):
    names = landmark_definitions().ibug_names + ("eye_right_centre",)
    rng = np.random.default_rng(2)
    matrix = np.zeros((NUM_IBUG + 1, 10))
    for r in range(len(matrix)):
        idx = rng.choice(10, 3, replace=False)
        w = rng.normal(size=3)
        matrix[r, idx] = w - (w.sum() - 1.0) / 3
    table = IndexTable(matrix, names)
    pts = rng.normal(size=(10, 3))
    np.testing.assert_allclose(table.apply(pts), matrix @ pts)
    # A landmark whose points are missing is missing; the others are unaffected.
    pts[4] = np.nan
    out = table.apply(pts)
    uses4 = matrix[:, 4] != 0
    assert np.isnan(out[uses4]).all() and np.isfinite(out[~uses4]).all()
    path = tmp_path / "table.json"
    write_index_table(path, table, "det", "test")
    back = read_index_table(path, "det")
    assert back.names == names
    np.testing.assert_allclose(back.matrix, matrix, atol=2e-6)
    ident = IndexTable.identity(names[:3])
    np.testing.assert_array_equal(ident.apply(np.eye(3)), np.eye(3))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("num_points"), "not a landmark index table"),
    (lambda d: d["ibug"][3]["weights"].__setitem__(0, 7.0), "sum to 1"),
    (lambda d: d["ibug"].pop(), "indices 0..67"),
    (lambda d: d["extras"][0].__setitem__("name", "nose_tip_2"), "unknown extra"),
])
def test_bad_index_table_names_file_and_problem(tmp_path, mutate, message):
    src = json.loads((resources_dir() / "landmarks_mediapipe_to_ibug.json").read_text())
    mutate(src)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(src))
    with pytest.raises(InputFileError, match=message) as info:
        read_index_table(path, "mediapipe")
    assert str(path) in str(info.value)


def test_fit_index_table_recovers_a_known_combination():
    rng = np.random.default_rng(3)
    heads, num_points = 30, 40
    base = rng.normal(size=(num_points, 3))
    points = base + 0.15 * rng.normal(size=(heads, num_points, 3))
    true_w = np.zeros((5, num_points))
    for k in range(5):
        near = np.argsort(np.linalg.norm(base - base[k * 7], axis=1))[:4]
        true_w[k, near] = [0.7, 0.5, -0.4, 0.2]
    truth = np.einsum("kp,npd->nkd", true_w, points)
    points[0, 13] = np.nan  # one head where a point was not placed
    w = fit_index_table(points, truth, support=6, ridge=1e-6)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-9)
    assert ((w != 0).sum(1) == 6).all()
    pred = np.einsum("kp,npd->nkd", w, np.nan_to_num(points[1:]))
    assert np.abs(pred - truth[1:]).max() < 0.02
    with pytest.raises(ValueError, match="never placed"):
        fit_index_table(np.full((2, 3, 3), np.nan), truth[:2, :1])


def test_mediapipe_detector_alive_at_exit_closes_quietly():
    code = ("from reflame_core.landmarks.detector import get_detector\n"
            "det = get_detector('mediapipe')\nprint('ready')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "ready" in run.stdout
    assert "Traceback" not in run.stderr and "Error" not in run.stderr, run.stderr[-2000:]
