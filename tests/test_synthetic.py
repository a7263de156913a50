"""Synthetic heads: different topology, truth on the surface, textured, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.scan import load_scan
from reflame_core.synthetic.head import (
    SMALL_TARGET_VERTICES,
    make_synthetic_head,
    write_synthetic_head,
)


@pytest.fixture(scope="module")
def inputs(flame_dir: Path, data_dir: Path):
    texture = np.asarray(Image.open(data_dir / "textures" / "facescape_texmap.jpg").convert("RGB"))
    return load_flame_template(flame_dir), texture, load_landmark_embedding(flame_dir)


@pytest.fixture(scope="module")
def small(inputs):
    return make_synthetic_head(*inputs, seed=3, target_vertices=SMALL_TARGET_VERTICES)


def _check_head(head, template) -> None:
    scan = head.scan
    assert scan.has_texture and scan.vertices.dtype == np.float32
    assert len(scan.faces) != len(template.faces) and len(scan.vertices) != len(template.vertices)
    height = float(np.ptp(head.deformed_vertices[:, 1]))
    canon = head.to_canonical.apply(scan.vertices.astype(np.float64))
    # No scan vertex sits on a (deformed) template vertex.
    d_tpl, _ = cKDTree(head.deformed_vertices).query(canon)
    assert d_tpl.min() > 1e-6 * height and np.median(d_tpl) > 1e-3 * height
    # Truth lies on the scan surface and next to the deformed template.
    ext = float(scan.extent.max())
    for pts in (head.true_vertices, head.true_landmarks):
        d = MeshQuery(scan.vertices, scan.faces, centroids=64).closest(pts).distance
        assert d.max() < 1e-5 * ext
    true_canon = head.to_canonical.apply(head.true_vertices)
    err = np.linalg.norm(true_canon - head.deformed_vertices, axis=1)
    assert np.median(err) < 2e-3 * height and err.max() < 0.03 * height
    # The scan's UVs at each true vertex are the template's UVs there (off UV seams).
    hits = MeshQuery(scan.vertices, scan.faces, centroids=64).closest(head.true_vertices)
    fid, bary = hits.face, hits.bary.astype(np.float64)
    uv_scan = np.einsum("qk,qkd->qd", bary, scan.uv[scan.uv_faces[fid]])
    corner_uv = np.zeros((len(template.vertices), 2))
    corner_uv[template.faces.ravel()] = template.uv[template.uv_faces.ravel()]
    single = (
        np.bincount(
            np.unique(np.stack([template.faces.ravel(), template.uv_faces.ravel()], 1), axis=0)[
                :, 0
            ]
        )
        == 1
    )
    diff = np.linalg.norm(uv_scan[single] - corner_uv[single], axis=1)
    assert np.median(diff) < 1e-3 and np.percentile(diff, 95) < 1e-2


def test_small_head(small, inputs) -> None:
    template, texture, _ = inputs
    assert abs(len(small.scan.vertices) - SMALL_TARGET_VERTICES) < 100
    _check_head(small, template)
    np.testing.assert_array_equal(small.texture_truth, texture)
    assert small.scan.texture is small.texture_truth
    # Scan is in its own frame: metre-ish scale, rotated at most 10 degrees.
    assert 1 / 0.3 <= small.to_canonical.scale <= 1 / 0.08
    angle = np.degrees(np.arccos((np.trace(small.to_canonical.rotation) - 1) / 2))
    assert 0 < angle <= 10.0 + 1e-9


def test_default_head_is_subdivided(inputs) -> None:
    head = make_synthetic_head(*inputs, seed=5)
    assert len(head.scan.vertices) == 20000
    _check_head(head, inputs[0])


def test_deterministic(inputs, small) -> None:
    again = make_synthetic_head(*inputs, seed=3, target_vertices=SMALL_TARGET_VERTICES)
    np.testing.assert_array_equal(again.scan.vertices, small.scan.vertices)
    np.testing.assert_array_equal(again.scan.uv_faces, small.scan.uv_faces)
    np.testing.assert_array_equal(again.true_vertices, small.true_vertices)
    other = make_synthetic_head(*inputs, seed=4, target_vertices=SMALL_TARGET_VERTICES)
    assert not np.allclose(other.deformed_vertices, small.deformed_vertices)


def test_write_and_reload(small, tmp_path: Path) -> None:
    obj = write_synthetic_head(small, tmp_path / "head")
    scan = load_scan(obj, require_texture=True)
    np.testing.assert_allclose(scan.vertices, small.scan.vertices, atol=1e-6)
    np.testing.assert_array_equal(scan.faces, small.scan.faces)
    np.testing.assert_allclose(
        scan.uv[scan.uv_faces], small.scan.uv[small.scan.uv_faces], atol=1e-6
    )
    np.testing.assert_array_equal(scan.texture, small.texture_truth)
    truth = np.load(tmp_path / "head" / "truth.npz")
    np.testing.assert_array_equal(truth["true_vertices"], small.true_vertices)
    np.testing.assert_allclose(truth["to_canonical_rotation"], small.to_canonical.rotation)


def test_closest_on_triangle_regions() -> None:
    tri = np.array([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]], np.float32)
    p = np.array([[0.2, 0.2, 1.0], [-1.0, -1.0, 0.5], [1.0, 1.0, 0.0], [0.5, -2.0, 0.0]])
    hits = MeshQuery(tri, np.array([[0, 1, 2]])).closest(p)
    np.testing.assert_allclose(
        hits.points, [[0.2, 0.2, 0], [0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0]], atol=1e-6
    )
    np.testing.assert_allclose(hits.bary.sum(1), 1.0, atol=1e-6)
