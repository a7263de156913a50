"""Exported textured fit: FLAME topology + UVs, and the v flip as trimesh/Blender read it."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.synthetic.head import make_synthetic_head
from reflame_core.texture.bake import bake_texture, scan_colors
from reflame_core.texture.export import export_textured_fit


@pytest.fixture(scope="module")
def setup(flame_dir, data_dir):
    template = load_flame_template(flame_dir)
    texture = np.asarray(Image.open(data_dir / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(template, texture, load_landmark_embedding(flame_dir), seed=5)
    bake = bake_texture(head.true_vertices, template, head.scan, resolution=512)
    return template, head, bake


def _trimesh_vs_scan_colour(path, head) -> float:
    """Median |colour trimesh shows at each exported vertex - scan colour there| (face tile)."""
    mesh = trimesh.load(path, process=False)
    shown = mesh.visual.to_color().vertex_colors[:, :3].astype(np.float64)
    hits = MeshQuery(head.scan.vertices, head.scan.faces).closest(
        np.asarray(mesh.vertices, np.float32)
    )
    truth = scan_colors(head.scan, hits)
    face_tile = np.asarray(mesh.visual.uv)[:, 0] < 1.0
    return float(np.median(np.abs(shown - truth)[face_tile]))


def test_export_writes_flame_topology_readable_by_trimesh(setup, tmp_path):
    template, head, bake = setup
    path = export_textured_fit(tmp_path, head.true_vertices, template, bake.texture, name="head")
    assert path == tmp_path / "head.obj"
    assert (tmp_path / "head.mtl").is_file() and (tmp_path / "head.png").is_file()
    png = np.asarray(Image.open(tmp_path / "head.png").convert("RGB"))
    np.testing.assert_array_equal(png, bake.texture)
    mesh = trimesh.load(path, process=False)
    assert len(mesh.faces) == len(template.faces)
    # trimesh splits FLAME's vertices at UV seams; every split copy sits on a FLAME vertex
    dist = np.linalg.norm(mesh.vertices[:, None] - head.true_vertices[None, :50], axis=2)
    assert (dist.min(0) < 1e-4).all()


def test_trimesh_shows_the_scan_colour_at_exported_vertices(setup, tmp_path):
    template, head, bake = setup
    good = export_textured_fit(tmp_path, head.true_vertices, template, bake.texture, name="ok")
    flipped = export_textured_fit(
        tmp_path, head.true_vertices, template, np.ascontiguousarray(bake.texture[::-1]),
        name="flipped",
    )
    assert _trimesh_vs_scan_colour(good, head) < 8.0
    # the same check fails when v is flipped, so it does test the convention
    assert _trimesh_vs_scan_colour(flipped, head) > 25.0


def test_export_rejects_wrong_shapes(setup, tmp_path):
    template, head, bake = setup
    with pytest.raises(ValueError, match="vertices must be"):
        export_textured_fit(tmp_path, head.true_vertices[:100], template, bake.texture)
    with pytest.raises(ValueError, match="uint8"):
        export_textured_fit(tmp_path, head.true_vertices, template, bake.texture.astype(float))
