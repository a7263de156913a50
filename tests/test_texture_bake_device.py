"""The bake on a torch device (the GPU path), run on the CPU: same candidates, faces and texture
as the numpy bake with KD-tree queries."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from vertex_colours import vertex_colour_scan

from reflame_core.geometry.grid_neighbors import GridNeighbors
from reflame_core.geometry.surface_query import MeshQuery, TorchMeshQuery
from reflame_core.io.mesh import vertex_normals
from reflame_core.texture.bake import bake_texture, flame_uv_raster, sample_bilinear
from reflame_core.texture.bake_device import sample_bilinear_tensor

RES = 96


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The device path on a CPU is many small tensor ops: torch's intra-op threads only add
    synchronisation there (on a busy 2-core machine, 10x), as MeshQuery's notes say."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def test_grid_neighbors_match_kd_tree_near_far_and_in_crowded_cells():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    rng = np.random.default_rng(0)
    pts = (np.asarray(sphere.vertices) * [1.0, 1.3, 0.8]).astype(np.float32)
    pts += rng.normal(0, 0.004, pts.shape).astype(np.float32)
    # A crowded patch (like FLAME's eye region): 400 points in a small ball.
    pts = np.concatenate([pts, (pts[0] + rng.normal(0, 0.01, (400, 3))).astype(np.float32)])
    near = pts[rng.integers(0, len(pts), 3000)] * rng.uniform(0.97, 1.03, (3000, 1))
    far = rng.normal(size=(50, 3)) * 3.0  # mostly beyond every grid's reach
    queries = np.concatenate([near, far]).astype(np.float32)
    tree = cKDTree(pts)
    for k in (1, 4):
        grid = GridNeighbors(torch.from_numpy(pts), k)
        idx, by_grid = grid.query(torch.from_numpy(queries))
        ref_d, _ = tree.query(queries, k=k)
        got_d = np.linalg.norm(pts[idx.numpy()] - queries[:, None], axis=2)
        np.testing.assert_allclose(got_d, ref_d.reshape(len(queries), k), rtol=1e-5, atol=1e-6)
        assert by_grid[:3000].float().mean() > 0.9  # the grids, not brute force, answer most
        assert not by_grid[3000:].all()  # some far ones took the brute-force fallback
        assert min(grid._levels) < 0  # the crowded patch was answered on a finer grid
        # Bounded: exact wherever the true neighbour is within reach.
        reach = 0.1
        idx, _ = GridNeighbors(torch.from_numpy(pts), k).query(torch.from_numpy(queries), reach)
        got_d = np.linalg.norm(pts[idx.numpy()] - queries[:, None], axis=2)
        within = ref_d.reshape(len(queries), k) <= reach
        assert within[:3000].mean() > 0.2 and not within[3000:].all()
        np.testing.assert_allclose(got_d[within], ref_d.reshape(len(queries), k)[within],
                                   rtol=1e-5, atol=1e-6)


def test_torch_mesh_query_lands_on_the_kd_tree_faces(flame_template, small_synthetic_head):
    head = small_synthetic_head
    raster = flame_uv_raster(flame_template, RES)
    verts = head.true_vertices.astype(np.float32)
    points = raster.interpolate(verts, flame_template.faces)
    normals = raster.interpolate(vertex_normals(verts, flame_template.faces),
                                 flame_template.faces)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    max_distance = 0.03 * float(np.ptp(verts, axis=0).max())
    cpu = MeshQuery(head.scan.vertices, head.scan.faces)
    dev = TorchMeshQuery(head.scan.vertices, head.scan.faces, device="cpu")
    with torch.inference_mode():
        seed = dev.closest(torch.from_numpy(points))
        ray = dev.raycast(torch.from_numpy(points), torch.from_numpy(normals), max_distance,
                          seed=seed)
    ref_seed = cpu.closest(points)
    ref_ray = cpu.raycast(points, normals, max_distance)
    assert (seed.face.numpy() == ref_seed.face).mean() >= 0.999
    np.testing.assert_allclose(seed.distance.numpy(), ref_seed.distance, atol=1e-6)
    assert (ray.face.numpy() == ref_ray.face).mean() >= 0.999
    assert ray.hit.float().mean() > 0.9


@pytest.mark.parametrize("method", ["normal_ray", "closest"])
def test_device_bake_on_cpu_matches_the_numpy_bake(flame_template, small_synthetic_head, method):
    head = small_synthetic_head
    ref = bake_texture(head.true_vertices, flame_template, head.scan, resolution=RES,
                       method=method)
    got = bake_texture(head.true_vertices, flame_template, head.scan, resolution=RES,
                       method=method, device="cpu")
    assert got.texture.dtype == np.uint8 and got.texture.shape == ref.texture.shape
    assert psnr(got.texture, ref.texture) > 40.0
    assert (got.valid != ref.valid).mean() < 1e-3
    assert ref.valid.mean() > 0.8
    finite = np.isfinite(ref.source_distance)
    np.testing.assert_array_equal(np.isfinite(got.source_distance), finite)
    diff = np.abs(got.source_distance[finite] - ref.source_distance[finite])
    assert np.median(diff) < 1e-6


def test_device_bake_matches_where_the_fit_is_far_from_the_scan(flame_template,
                                                               small_synthetic_head):
    """Texels beyond max_distance (hair over the scalp, say) are answered with bounded work;
    valid texels and their colours stay those of the numpy bake."""
    verts = np.array(small_synthetic_head.true_vertices, np.float32)
    height = float(np.ptp(verts[:, 1]))
    side = np.clip((verts[:, 0] - verts[:, 0].mean()) / (0.2 * height), 0.0, 1.0)
    verts += (0.06 * height * side)[:, None] * vertex_normals(verts, flame_template.faces)
    scan = small_synthetic_head.scan
    ref = bake_texture(verts, flame_template, scan, resolution=RES)
    got = bake_texture(verts, flame_template, scan, resolution=RES, device="cpu")
    assert 0.2 < ref.valid.mean() < 0.7  # a large part is out of reach
    assert (got.valid != ref.valid).mean() < 1e-3
    assert psnr(got.texture, ref.texture) > 40.0
    near = ref.valid
    np.testing.assert_allclose(got.source_distance[near], ref.source_distance[near], atol=1e-5)
    far = np.isfinite(ref.source_distance) & ~ref.valid
    assert (got.source_distance[far] >= ref.source_distance[far] - 1e-5).all()  # upper bound


def test_device_bake_of_vertex_colours_matches(flame_template, small_synthetic_head):
    scan = small_synthetic_head.scan
    vc = vertex_colour_scan(scan)
    verts = small_synthetic_head.true_vertices
    ref = bake_texture(verts, flame_template, vc, resolution=64, method="closest")
    got = bake_texture(verts, flame_template, vc, resolution=64, method="closest", device="cpu")
    assert psnr(got.texture, ref.texture) > 40.0


def test_bilinear_lookup_matches_opencvs_remap():
    # An independent bilinear: cv2.remap at the texel coordinates the lookup's convention
    # gives (centres at +0.5, v up, wrapped outside [0,1], clamped at the edge).
    rng = np.random.default_rng(2)
    tex = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    uv = rng.uniform(-0.5, 1.5, (500, 2)).astype(np.float32)
    wrapped = np.where((uv < 0) | (uv > 1), np.mod(uv, 1.0), uv)
    x = np.clip(wrapped[:, 0] * 53 - 0.5, 0, 52).astype(np.float32)
    y = np.clip((1 - wrapped[:, 1]) * 37 - 0.5, 0, 36).astype(np.float32)
    ref = cv2.remap(tex.astype(np.float32), x[None], y[None], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)[0]
    np.testing.assert_allclose(
        sample_bilinear_tensor(torch.from_numpy(tex), torch.from_numpy(uv)).numpy(), ref,
        atol=0.05)
    np.testing.assert_allclose(sample_bilinear(tex, uv), ref, atol=0.05)
