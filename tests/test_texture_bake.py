"""Projection bake on synthetic heads whose FLAME-UV texture is known."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image
from vertex_colours import vertex_colour_scan

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.errors import ScanError
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.mesh import Scan, vertex_normals
from reflame_core.synthetic.head import make_synthetic_head
from reflame_core.texture.bake import bake_texture, flame_uv_raster
from reflame_core.texture.inpaint import push_pull_fill
from reflame_core.texture.uv_raster import rasterize_uv

RES = 512


@pytest.fixture(scope="module")
def template(flame_dir):
    return load_flame_template(flame_dir)


@pytest.fixture(scope="module")
def head(template, flame_dir, data_dir):
    texture = np.asarray(Image.open(data_dir / "textures" / "facescape_texmap.jpg").convert("RGB"))
    return make_synthetic_head(template, texture, load_landmark_embedding(flame_dir), seed=3)


def truth_at(head, res: int) -> np.ndarray:
    import cv2

    return cv2.resize(head.texture_truth, (res, res), interpolation=cv2.INTER_AREA)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[mask]
    return float(10 * np.log10(255.0**2 / np.mean(d**2)))


def normal_offset(template, vertices: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A smooth random offset along the normals, rms ~``fraction`` of the head height."""
    rng = np.random.default_rng(seed)
    height = float(np.ptp(vertices[:, 1]))
    x = vertices / height
    dirs = rng.normal(size=(6, 3))
    field = sum(np.sin(3 * x @ d + p) for d, p in zip(dirs, rng.uniform(0, 6.3, 6), strict=True))
    offset = fraction * height * field / np.sqrt(3)
    normals = vertex_normals(vertices, template.faces)
    return (vertices + offset[:, None] * normals).astype(np.float32)


def test_uv_raster_recovers_texel_centres_and_skips_eyeball_tile(template):
    r = rasterize_uv(template.uv, template.uv_faces, 128)
    rows, cols = np.nonzero(r.covered)
    uv = r.interpolate(template.uv, template.uv_faces)
    assert np.abs(uv[:, 0] - (cols + 0.5) / 128).max() < 1e-4
    assert np.abs(uv[:, 1] - (1 - (rows + 0.5) / 128)).max() < 1e-4
    tile = np.floor(template.uv[template.uv_faces].mean(1)[:, 0])
    assert (tile[r.face_id[r.covered]] == 0).all()
    assert 0.85 < r.covered.mean() < 0.95  # the FLAME head layout fills ~91% of tile 0


def test_mesh_query_closest_matches_brute_force_and_rays_hit_their_line():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    verts = (np.asarray(sphere.vertices) * [1.0, 1.3, 0.8]).astype(np.float32)
    faces = np.asarray(sphere.faces)
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 3)).astype(np.float32)
    pts *= rng.uniform(0.8, 1.2, (300, 1)) / np.linalg.norm(pts, axis=1, keepdims=True)
    q = MeshQuery(verts, faces)
    hits = q.closest(pts)
    _, brute, _ = trimesh.proximity.closest_point_naive(trimesh.Trimesh(verts, faces), pts)
    np.testing.assert_allclose(hits.distance, brute, atol=1e-5)
    dirs = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    rays = q.raycast(pts, dirs, 0.5)
    assert rays.hit.mean() > 0.95
    off_line = np.cross(rays.points[rays.hit] - pts[rays.hit], dirs[rays.hit])
    assert np.abs(off_line).max() < 1e-4
    on_mesh = np.einsum("nk,nkd->nd", rays.bary, verts[faces[np.maximum(rays.face, 0)]])
    np.testing.assert_allclose(on_mesh[rays.hit], rays.points[rays.hit], atol=1e-4)


def test_push_pull_keeps_known_texels_and_fills_smoothly():
    yy, xx = np.mgrid[:64, :64].astype(np.float32)
    ramp = np.stack([xx, yy, xx + yy], -1)
    known = np.random.default_rng(1).random((64, 64)) < 0.3
    known[20:40, 20:40] = False
    out = push_pull_fill(np.where(known[..., None], ramp, 0.0), known)
    np.testing.assert_array_equal(out[known], ramp[known])
    assert np.abs(out - ramp)[~known].mean() < 3.0  # a ramp is extrapolated, not flattened
    const = push_pull_fill(np.full((32, 32, 3), 7.0, np.float32), known[:32, :32])
    np.testing.assert_allclose(const, 7.0, atol=1e-4)


@pytest.mark.parametrize("method", ["normal_ray", "closest"])
def test_bake_from_true_fit_reaches_30db(template, head, method):
    result = bake_texture(head.true_vertices, template, head.scan, resolution=RES, method=method)
    assert result.texture.shape == (RES, RES, 3) and result.texture.dtype == np.uint8
    covered = flame_uv_raster(template, RES).covered
    assert result.valid.sum() > 0.97 * covered.sum()
    assert not result.valid[~covered].any()
    assert psnr(result.texture, truth_at(head, RES), result.valid) >= 30.0


def test_bake_from_perturbed_fit_reaches_30db(template, head):
    fitted = normal_offset(template, head.true_vertices, 0.003)
    result = bake_texture(fitted, template, head.scan, resolution=RES)
    assert psnr(result.texture, truth_at(head, RES), result.valid) >= 30.0
    finite = np.isfinite(result.source_distance) & result.valid
    height = float(np.ptp(head.true_vertices[:, 1]))
    assert np.median(result.source_distance[finite]) < 0.01 * height


def test_bake_rejects_far_sources_and_fills_everything(template, head):
    far = np.array(head.true_vertices, np.float32)
    far += 0.2 * vertex_normals(far, template.faces) * float(np.ptp(far[:, 1]))
    result = bake_texture(far, template, head.scan, resolution=128)
    assert result.valid.mean() < 0.05
    assert result.texture.any()  # filled, not black: push-pull spreads the few valid texels


def test_vertex_colour_scan_bakes_and_untextured_scan_is_refused(template, head):
    scan = head.scan
    vc = vertex_colour_scan(scan)
    result = bake_texture(head.true_vertices, template, vc, resolution=128)
    assert psnr(result.texture, truth_at(head, 128), result.valid) > 15.0
    bare = Scan(vertices=scan.vertices, faces=scan.faces, path=None)
    with pytest.raises(ScanError, match="neither a texture"):
        bake_texture(head.true_vertices, template, bare, resolution=64)
