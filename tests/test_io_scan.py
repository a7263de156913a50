"""load_scan for PLY and GLB/GLTF, plus path-level errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from reflame_core.errors import ScanError
from reflame_core.io.scan import load_scan


def test_missing_and_unsupported(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="file not found") as e:
        load_scan(tmp_path / "nope.obj")
    assert "nope.obj" in str(e.value)
    (tmp_path / "scan.stl").write_text("solid x\nendsolid x\n")
    with pytest.raises(ScanError, match="unsupported file type .stl"):
        load_scan(tmp_path / "scan.stl")


def test_ply_vertex_colors(tmp_path: Path) -> None:
    m = trimesh.creation.icosphere(subdivisions=2)
    colors = np.random.default_rng(1).integers(0, 255, (len(m.vertices), 3), np.uint8)
    m.visual = trimesh.visual.ColorVisuals(m, vertex_colors=colors)
    p = tmp_path / "head.ply"
    m.export(p)
    scan = load_scan(p)
    np.testing.assert_allclose(scan.vertices, m.vertices, atol=1e-6)
    np.testing.assert_array_equal(scan.faces, m.faces)
    np.testing.assert_array_equal(scan.vertex_colors, colors)
    assert scan.units == "unknown" and not scan.has_texture


@pytest.mark.parametrize("encoding", ["ascii", "binary"])
def test_a_ply_header_in_latin1_is_read(tmp_path: Path, encoding: str) -> None:
    """Scanner software on Windows writes the operator's name into a header comment in
    Latin-1; trimesh's parser wants UTF-8 and refused the whole file."""
    m = trimesh.creation.icosphere(subdivisions=2)
    colors = np.random.default_rng(2).integers(0, 255, (len(m.vertices), 3), np.uint8)
    m.visual = trimesh.visual.ColorVisuals(m, vertex_colors=colors)
    data = trimesh.exchange.ply.export_ply(m, encoding=encoding)
    after_format = data.index(b"\n", data.index(b"format")) + 1
    p = tmp_path / "head.ply"
    p.write_bytes(data[:after_format] + "comment scanned by José Müller\n".encode("latin-1")
                  + data[after_format:])
    scan = load_scan(p)
    np.testing.assert_allclose(scan.vertices, m.vertices, atol=1e-6)
    np.testing.assert_array_equal(scan.faces, m.faces)
    np.testing.assert_array_equal(scan.vertex_colors, colors)


def test_ply_face_colors_become_vertex_colors(tmp_path: Path) -> None:
    """Per-face colours (a scanner's or MeshLab's export) were dropped, and the scan rendered
    grey: they are averaged at the vertices."""
    m = trimesh.creation.icosphere(subdivisions=2)
    face_colors = np.zeros((len(m.faces), 4), np.uint8)
    face_colors[:, 3] = 255
    face_colors[m.triangles_center[:, 2] > 0, 0] = 200  # upper half red, lower half black
    m.visual = trimesh.visual.ColorVisuals(m, face_colors=face_colors)
    p = tmp_path / "head.ply"
    m.export(p)
    scan = load_scan(p)
    assert scan.vertex_colors is not None and scan.vertex_colors.shape == (len(m.vertices), 3)
    top, bottom = m.vertices[:, 2] > 0.5, m.vertices[:, 2] < -0.5
    assert (scan.vertex_colors[top, 0] == 200).all() and (scan.vertex_colors[bottom] == 0).all()
    assert any("per face: averaged at the vertices" in n for n in scan.notes)


def test_corrupt_ply(tmp_path: Path) -> None:
    p = tmp_path / "bad.ply"
    p.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n")
    with pytest.raises(ScanError, match="bad.ply"):
        load_scan(p)


def test_lee_perry_smith_glb_is_welded(data_dir: Path) -> None:
    scan = load_scan(data_dir / "scans" / "lee_perry_smith" / "LeePerrySmith.glb")
    assert scan.units == "m"
    assert scan.faces.shape == (17684, 3) and scan.uv.shape == (9279, 2)
    assert len(scan.vertices) < 9279  # seam copies merged
    assert len(np.unique(scan.vertices, axis=0)) == len(scan.vertices)
    assert np.isclose(scan.extent.max(), 8.55, atol=0.05)
    # Welded mesh is (mostly) connected: every edge but the true boundary has two faces.
    edges = np.sort(scan.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 1).mean() < 0.02
    with pytest.raises(ScanError, match="no texture image"):
        load_scan(scan.path, require_texture=True)


def test_glb_embedded_texture_keeps_uv_convention(tmp_path: Path) -> None:
    m = trimesh.creation.box()
    uv = m.vertices[:, :2] * 0.5 + 0.5  # arbitrary, OBJ convention
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:4] = 255  # top half white
    m.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(tex))
    p = tmp_path / "box.glb"
    m.export(p)
    scan = load_scan(p, require_texture=True)
    np.testing.assert_array_equal(scan.texture, tex)
    # Each corner's uv matches the original uv of the vertex at the same position.
    key = {tuple(np.round(x, 5)): u for x, u in zip(m.vertices, uv, strict=True)}
    corner_pos = scan.vertices[scan.faces].reshape(-1, 3)
    corner_uv = scan.uv[scan.uv_faces].reshape(-1, 2)
    expected = np.array([key[tuple(np.round(x, 5))] for x in corner_pos])
    np.testing.assert_allclose(corner_uv, expected, atol=1e-5)


def test_missing_material_library_is_said(tmp_path: Path) -> None:
    """An OBJ whose MTL was not copied with it loads untextured, and the scan says why."""
    obj = tmp_path / "head.obj"
    obj.write_text("mtllib head.mtl\nusemtl skin\nv 0 0 0\nv 1 0 0\nv 0 1 0\n"
                   "vt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n")
    scan = load_scan(obj)
    assert scan.texture is None
    assert len(scan.notes) == 1 and "head.mtl not found" in scan.notes[0]
    with pytest.raises(ScanError, match="head.mtl not found"):
        load_scan(obj, require_texture=True)
    (tmp_path / "head.mtl").write_text("newmtl skin\nKd 1 1 1\n")
    assert load_scan(obj).notes == []


def test_uvs_without_an_image_are_an_untextured_scan(tmp_path: Path) -> None:
    """A PLY with texture coordinates and no texture file: trimesh stands a 2x2 grey image
    in for it, with which detection would see one flat colour. The scan is untextured (so
    shaded) and says why; a real image of one colour but more pixels is kept."""
    m = trimesh.creation.icosphere(subdivisions=2)
    uv = np.random.default_rng(0).random((len(m.vertices), 2))
    m.visual = trimesh.visual.TextureVisuals(uv=uv)
    p = tmp_path / "head.ply"
    m.export(p)
    scan = load_scan(p)
    assert not scan.has_texture and scan.texture is None and scan.uv is not None
    assert any("texture coordinates but no texture image" in n for n in scan.notes)

    m.visual = trimesh.visual.TextureVisuals(
        uv=uv, image=Image.fromarray(np.full((4, 4, 3), 90, np.uint8)))
    m.export(tmp_path / "plain.glb")
    assert load_scan(tmp_path / "plain.glb").has_texture


def test_a_stray_point_and_a_floater_far_away_are_left_out(tmp_path: Path) -> None:
    """One unused vertex or one speck a few head sizes away would set the bounding box
    that frames every render; they are left out, said in the notes. Pieces inside the
    head's box (an eyeball) stay."""
    head = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    eye = trimesh.creation.icosphere(subdivisions=1, radius=0.01)
    eye.apply_translation([0.05, 0.0, 0.07])
    speck = trimesh.creation.icosphere(subdivisions=0, radius=0.002)
    speck.apply_translation([2.0, 0.0, 0.0])
    trimesh.util.concatenate([head, eye, speck]).export(tmp_path / "floater.ply")
    scan = load_scan(tmp_path / "floater.ply")
    assert len(scan.faces) == len(head.faces) + len(eye.faces)
    assert np.ptp(scan.vertices, axis=0).max() < 0.21
    assert any("1 small pieces (20 faces) far from the rest" in n for n in scan.notes)

    lines = [f"v {x} {y} {z}" for x, y, z in head.vertices] + ["v 1000 1000 1000", "v nan 0 0"]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in head.faces]
    (tmp_path / "stray.obj").write_text("\n".join(lines) + "\n")
    scan = load_scan(tmp_path / "stray.obj")
    assert len(scan.vertices) == len(head.vertices)
    assert any("2 vertices that no face uses were left out" in n for n in scan.notes)

    lines[-1] = f"f {len(head.vertices) + 2} 1 2"  # the NaN vertex is used now
    (tmp_path / "nan.obj").write_text("\n".join(lines) + "\n")
    with pytest.raises(ScanError, match=f"the first is vertex {len(head.vertices) + 2}, "
                                        "counting from 1"):
        load_scan(tmp_path / "nan.obj")


def test_parts_without_texture_coordinates_keep_the_heads_texture(tmp_path: Path) -> None:
    """Eyeballs or a stand exported without UVs beside a textured head: the texture is
    kept (OBJ and GLB alike), those faces take a placeholder coordinate, and a note says so."""
    Image.new("RGB", (8, 8), (180, 120, 90)).save(tmp_path / "skin.png")
    (tmp_path / "a.mtl").write_text("newmtl skin\nmap_Kd skin.png\nnewmtl eye\nKd 1 1 1\n")
    (tmp_path / "a.obj").write_text(
        "mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nvt 0.2 0.2\nvt 0.8 0.2\nvt 0.2 0.8\n"
        "usemtl skin\nf 1/1 2/2 3/3\nusemtl eye\nf 1 3 4\n")
    scan = load_scan(tmp_path / "a.obj", require_texture=True)
    assert scan.uv[scan.uv_faces[1]].tolist() == [[0.0, 0.0]] * 3
    corners = sorted(map(tuple, scan.uv[scan.uv_faces[0]].astype(np.float64).round(3).tolist()))
    assert corners == [(0.2, 0.2), (0.2, 0.8), (0.8, 0.2)]  # (its winding may be turned)
    assert any("1 of its 2 faces have no texture coordinates" in n for n in scan.notes)

    head = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False,
                           visual=trimesh.visual.TextureVisuals(
                               uv=[[0.2, 0.2], [0.8, 0.2], [0.2, 0.8]],
                               image=Image.open(tmp_path / "skin.png")))
    stand = trimesh.creation.box(extents=(0.5, 0.1, 0.5))
    stand.apply_translation([0.2, -0.2, 0.2])
    trimesh.Scene([head, stand]).export(tmp_path / "a.glb")
    scan = load_scan(tmp_path / "a.glb", require_texture=True)
    assert scan.texture[0, 0].tolist() == [180, 120, 90]
    assert any("12 of its 13 faces have no texture coordinates" in n for n in scan.notes)


def _quantized_glb(path: Path, uv: np.ndarray, extensions: list[str],
                   image_uri: str | None = None, texture_info: dict | None = None,
                   mode: int = 4) -> None:
    """A one-triangle GLB whose TEXCOORD_0 is normalized unsigned shorts, as gltfpack writes
    them (KHR_mesh_quantization), with a 4x4 PNG whose rows are red, green, blue, white:
    embedded, or (``image_uri``) an external file that the caller writes; its primitive's
    ``mode`` 4 (triangles) or another."""
    import io
    import json
    import struct

    img = np.zeros((4, 4, 3), np.uint8)
    img[0], img[1], img[2], img[3] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
    png = io.BytesIO()
    Image.fromarray(img).save(png, format="PNG")
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    tex = np.round(uv * 65535).astype(np.uint16).tobytes()
    idx = np.array([0, 1, 2, 0], np.uint16).tobytes()  # padded to 4 bytes
    blobs = [pos, tex, idx, png.getvalue()]
    offsets = np.cumsum([0] + [len(b) + (-len(b)) % 4 for b in blobs])
    binary = b"".join(b + b"\0" * ((-len(b)) % 4) for b in blobs)
    doc = {
        "asset": {"version": "2.0"}, "extensionsUsed": extensions,
        "extensionsRequired": extensions, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1},
                                    "indices": 2, "material": 0, "mode": mode}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0,
                                                                     **(texture_info or {})}}}],
        "textures": [{"source": 0}],
        "images": [{"bufferView": 3, "mimeType": "image/png"} if image_uri is None
                   else {"uri": image_uri}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [{"buffer": 0, "byteOffset": int(offsets[i]), "byteLength": len(b)}
                        for i, b in enumerate(blobs)],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
             "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5123, "normalized": True, "count": 3,
             "type": "VEC2"},
            {"bufferView": 2, "componentType": 5123, "count": 3, "type": "SCALAR"}],
    }
    js = json.dumps(doc).encode()
    js += b" " * ((-len(js)) % 4)
    body = (struct.pack("<I4s", len(js), b"JSON") + js
            + struct.pack("<I4s", len(binary), b"BIN\0") + binary)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)


def test_gltf_quantized_texture_coordinates_and_compressed_meshes(tmp_path: Path) -> None:
    # glTF v runs down the image: v = 0.1 is the top (red) row, v = 0.6 the blue one.
    uv = np.array([[0.1, 0.1], [0.9, 0.1], [0.5, 0.6]])
    _quantized_glb(tmp_path / "q.glb", uv, ["KHR_mesh_quantization"])
    scan = load_scan(tmp_path / "q.glb", require_texture=True)
    assert scan.uv.min() >= 0 and scan.uv.max() <= 1
    h, w = scan.texture.shape[:2]
    corner = scan.uv[scan.uv_faces[0]]
    rows = ((1 - corner[:, 1]) * h).astype(int)  # OBJ convention: v up, row 0 at v = 1
    assert scan.texture[rows, (corner[:, 0] * w).astype(int)].tolist() == [
        [255, 0, 0], [255, 0, 0], [0, 0, 255]]
    # The same texels through KHR_texture_transform: half the coordinates, scaled by 2.
    moved = {"extensions": {"KHR_texture_transform": {"scale": [2.0, 2.0]}}}
    _quantized_glb(tmp_path / "t.glb", uv / 2, ["KHR_texture_transform"], texture_info=moved)
    scan = load_scan(tmp_path / "t.glb", require_texture=True)
    corner = scan.uv[scan.uv_faces[0]]
    rows = ((1 - corner[:, 1]) * h).astype(int)
    assert scan.texture[rows, (corner[:, 0] * w).astype(int)].tolist() == [
        [255, 0, 0], [255, 0, 0], [0, 0, 255]]
    # On a second coordinate set, which is not read: untextured, and said.
    _quantized_glb(tmp_path / "s.glb", uv, [], texture_info={"texCoord": 1})
    scan = load_scan(tmp_path / "s.glb")
    assert not scan.has_texture and "texture coordinate set 1" in scan.notes[0]
    for ext, name in (("EXT_meshopt_compression", "meshopt"),
                      ("KHR_draco_mesh_compression", "Draco")):
        _quantized_glb(tmp_path / "c.glb", uv, [ext])
        try:
            import DracoPy  # noqa: F401
            if name == "Draco":
                continue  # decodable here
        except ImportError:
            pass
        with pytest.raises(ScanError, match=f"c.glb: its meshes are {name}-compressed"):
            load_scan(tmp_path / "c.glb")


def test_triangle_fans_that_are_not_read_are_said(tmp_path: Path) -> None:
    from reflame_core.io.gltf_header import triangle_fans_note

    _quantized_glb(tmp_path / "fan.glb", np.array([[0.1, 0.1], [0.9, 0.1], [0.5, 0.6]]), [],
                   mode=6)
    with pytest.raises(ScanError, match="no triangle mesh .*1 of its mesh parts are "
                                        "triangle fans"):
        load_scan(tmp_path / "fan.glb")
    doc = {"meshes": [{"primitives": [{"mode": 6}, {}]}, {"primitives": [{"mode": 6}]}]}
    assert triangle_fans_note(doc).startswith("2 of its mesh parts are triangle fans")
    assert triangle_fans_note({"meshes": [{"primitives": [{"mode": 4}, {}]}]}) is None


def test_a_texture_format_that_cannot_be_read_is_named() -> None:
    from reflame_core.io.gltf_header import unreadable_texture_note

    assert "KTX2" in unreadable_texture_note({"extensionsUsed": ["KHR_texture_basisu"]})
    assert unreadable_texture_note({"extensionsUsed": ["KHR_materials_unlit"]}) is None


def test_a_texture_file_trimesh_cannot_resolve_is_found_or_named(tmp_path: Path, capfd) -> None:
    """A PLY's ``comment TextureFile`` written as a Windows path, a glTF image URI with %20:
    found beside the scan; a missing one is said in the notes, with no traceback."""
    Image.new("RGB", (4, 4), (10, 200, 30)).save(tmp_path / "tex a.png")
    ply = ("ply\nformat ascii 1.0\ncomment TextureFile {}\nelement vertex 3\n"
           "property float x\nproperty float y\nproperty float z\nproperty float s\n"
           "property float t\nelement face 1\nproperty list uchar int vertex_indices\n"
           "end_header\n0 0 0 0 0\n1 0 0 1 0\n0 1 0 0 1\n3 0 1 2\n")
    (tmp_path / "win.ply").write_text(ply.format("C:\\scans\\tex a.png"))
    assert load_scan(tmp_path / "win.ply").texture[0, 0].tolist() == [10, 200, 30]
    (tmp_path / "lost.ply").write_text(ply.format("elsewhere.png"))
    scan = load_scan(tmp_path / "lost.ply")
    assert not scan.has_texture
    assert scan.notes == ["texture file elsewhere.png not found beside the scan: it is "
                          "rendered shaded, as an untextured scan"]
    assert "Traceback" not in capfd.readouterr().err
    _quantized_glb(tmp_path / "uri.glb", np.array([[0.1, 0.1], [0.9, 0.1], [0.5, 0.6]]),
                   [], image_uri="tex%20a.png")
    assert load_scan(tmp_path / "uri.glb").texture[0, 0].tolist() == [10, 200, 30]
