"""Scans with several textures (one per material) load as one packed texture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from reflame_core.io.atlas import PLAIN, pack_textures
from reflame_core.io.scan import load_scan
from reflame_core.texture.bake import bake_texture


def _sample(scan, face: np.ndarray) -> np.ndarray:
    """(N,3) texture colour at the UV centroid of each face (nearest texel; UVs wrap, as
    the renderer and the bake read them)."""
    uv = scan.uv[scan.uv_faces[face]].mean(1) % 1.0
    h, w = scan.texture.shape[:2]
    x = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    y = np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
    return scan.texture[y, x].astype(int)


def test_two_material_obj_bakes_as_its_one_texture_original(
        small_synthetic_head, flame_template, tmp_path: Path) -> None:
    """The head split in two materials: the left faces on the texture as it is, the right
    ones on a mirrored copy, their UVs mirrored and moved one tile up (a repeating texture).
    The bake must match the single-texture scan's."""
    scan = small_synthetic_head.scan
    Image.fromarray(scan.texture).save(tmp_path / "left.png")
    Image.fromarray(np.ascontiguousarray(scan.texture[:, ::-1])).save(tmp_path / "right.png")
    (tmp_path / "head.mtl").write_text(
        "newmtl left\nmap_Kd left.png\nnewmtl right\nmap_Kd right.png\n")
    right = scan.vertices[scan.faces].mean(1)[:, 0] > np.median(scan.vertices[:, 0])
    mirrored = np.stack([1 - scan.uv[:, 0], scan.uv[:, 1] + 1], 1)
    t = len(scan.uv)
    lines = ["mtllib head.mtl"]
    lines += [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in scan.vertices]
    lines += [f"vt {u:.7f} {v:.7f}" for u, v in np.concatenate([scan.uv, mirrored])]
    for name, side, shift in (("left", ~right, 0), ("right", right, t)):
        lines.append(f"usemtl {name}")
        for f, ft in zip(scan.faces[side] + 1, scan.uv_faces[side] + 1 + shift, strict=True):
            lines.append("f " + " ".join(f"{a}/{b}" for a, b in zip(f, ft, strict=True)))
    obj = tmp_path / "head.obj"
    obj.write_text("\n".join(lines) + "\n")

    two = load_scan(obj, require_texture=True)
    assert any("2 textures (left.png, right.png) packed" in n for n in two.notes)
    assert two.texture.shape[1] > scan.texture.shape[1]  # two cells side by side
    # Each face shows the colour it had on the original texture.
    order = np.concatenate([np.flatnonzero(~right), np.flatnonzero(right)])  # as written
    assert np.abs(_sample(two, np.arange(len(order))) - _sample(scan, order)).mean() < 3

    truth = small_synthetic_head.true_vertices
    one_bake = bake_texture(truth, flame_template, scan, resolution=256)
    two_bake = bake_texture(truth, flame_template, two, resolution=256)
    both = one_bake.valid & two_bake.valid
    assert both.mean() > 0.5
    diff = np.abs(one_bake.texture.astype(int) - two_bake.texture.astype(int))[both]
    assert diff.mean() < 2.0


def test_glb_meshes_with_their_own_textures_are_packed(tmp_path: Path) -> None:
    """Three primitives: red, blue, and a second red one sharing the first's image (one
    cell for both)."""
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    scene = trimesh.Scene()
    for i, name in enumerate(("red", "blue", "red")):
        m = trimesh.creation.box()
        m.apply_translation((3.0 * i, 0, 0))
        uv = np.random.default_rng(i).random((len(m.vertices), 2))
        image = Image.fromarray(np.full((16, 16, 3), colours[name], np.uint8))
        material = trimesh.visual.material.PBRMaterial(name=name, baseColorTexture=image)
        m.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
        scene.add_geometry(m, node_name=f"part{i}")
    p = tmp_path / "parts.glb"
    scene.export(p)

    scan = load_scan(p, require_texture=True)
    assert any(n.startswith("2 textures") for n in scan.notes), scan.notes
    part = (scan.vertices[scan.faces].mean(1)[:, 0] / 3.0).round().astype(int)
    for i, want in enumerate((colours["red"], colours["blue"], colours["red"])):
        got = _sample(scan, np.flatnonzero(part == i))
        assert np.abs(got - np.array(want)).max() <= 1, (i, got[:3])


def test_pack_scales_cells_to_the_largest_side_and_keeps_corners_in_their_cell() -> None:
    images = [np.full((300, 200, 3), c, np.uint8) for c in (10, 200, 90)]
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    uv_faces = np.array([[0, 1, 2], [1, 3, 2], [0, 1, 3], [0, 3, 2]])
    packed = pack_textures([lambda im=im: im for im in images], [(200, 300)] * 3, uv, uv_faces,
                           np.array([0, 1, 2, -1]), max_side=256)
    h, w = packed.texture.shape[:2]
    assert max(h, w) <= 256
    assert packed.cell_size[1] < 300
    assert abs(packed.cell_size[0] / packed.cell_size[1] - 2 / 3) < 0.02
    corners = packed.uv[packed.uv_faces]  # (4,3,2)
    x = np.clip((corners[..., 0] * w).astype(int), 0, w - 1)
    y = np.clip(((1 - corners[..., 1]) * h).astype(int), 0, h - 1)
    values = packed.texture[y, x, 0]
    np.testing.assert_array_equal(values, [[10] * 3, [200] * 3, [90] * 3, [PLAIN] * 3])
