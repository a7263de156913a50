"""OBJ reading/writing: seams kept, polygons, index forms, atomic writes, trimesh-readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from reflame_core.errors import ScanError
from reflame_core.io.obj import read_obj, write_obj
from reflame_core.io.scan import load_scan


def _cube_with_seams() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit cube: 8 vertices, 12 triangles, UVs split per face (24 uv rows, seams)."""
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64)
    quads = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    f, ft, uv = [], [], []
    for q in quads:
        base = len(uv)
        uv += [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
        f += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
        ft += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return v, np.array(f), np.array(uv) * 0.5 + np.arange(24)[:, None] * 0.01, np.array(ft)


def test_round_trip_with_texture_and_spaces(tmp_path: Path) -> None:
    v, f, uv, ft = _cube_with_seams()
    tex = np.zeros((8, 16, 3), np.uint8)
    tex[0] = 255  # top row white: row 0 must stay the top
    out = tmp_path / "my scans" / "head scan.obj"
    write_obj(out, v, f, uv=uv, uv_faces=ft, texture=tex, normals=v - 0.5)
    names = {p.name for p in out.parent.iterdir()}
    assert names == {"head scan.obj", "head scan.mtl", "head scan.png"}
    scan = load_scan(out, require_texture=True)
    assert scan.vertices.shape == (8, 3) and scan.uv.shape == (24, 2)  # seams kept, not welded
    np.testing.assert_allclose(scan.vertices, v, atol=1e-6)
    np.testing.assert_array_equal(scan.faces, f)
    np.testing.assert_allclose(scan.uv[scan.uv_faces], uv[ft], atol=1e-6)
    np.testing.assert_array_equal(scan.texture, tex)


def test_second_mesh_shares_the_first_ones_texture(tmp_path: Path) -> None:
    v, f, uv, ft = _cube_with_seams()
    tex = np.full((4, 4, 3), 90, np.uint8)
    write_obj(tmp_path / "fit.obj", v, f, uv=uv, uv_faces=ft, texture=tex)
    write_obj(tmp_path / "fit_canonical.obj", 2 * v, f, uv=uv, uv_faces=ft, material="fit")
    assert {p.name for p in tmp_path.iterdir()} == {"fit.obj", "fit.mtl", "fit.png",
                                                   "fit_canonical.obj"}
    scan = load_scan(tmp_path / "fit_canonical.obj", require_texture=True)
    np.testing.assert_allclose(scan.vertices, 2 * v, atol=1e-6)
    np.testing.assert_array_equal(scan.texture, tex)
    with pytest.raises(ValueError, match="not both"):
        write_obj(tmp_path / "x.obj", v, f, uv=uv, uv_faces=ft, texture=tex, material="fit")


def test_written_obj_is_readable_by_trimesh(tmp_path: Path) -> None:
    v, f, uv, ft = _cube_with_seams()
    tex = np.full((4, 4, 3), 200, np.uint8)
    out = write_obj(tmp_path / "cube.obj", v, f, uv=uv, uv_faces=ft, texture=tex)
    m = trimesh.load(out, process=False)
    assert len(m.faces) == 12
    assert m.visual.kind == "texture" and m.visual.material.image is not None
    np.testing.assert_allclose(np.unique(m.vertices, axis=0), v, atol=1e-6)


def test_polygons_negative_indices_and_forms(tmp_path: Path) -> None:
    p = tmp_path / "poly.obj"
    p.write_text(
        "# comment\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0.5 1.5 0 0.2 0.3 0.4\n"
        "vn 0 0 1\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 1 0\n"
        "f 1/1/1 2/2/1 3/3/1 4/4/1\n"       # quad -> 2 triangles
        "f -5/-5 -3/-3 -1/-1\n"             # negative indices
        "\tf 4/4 3/3 5/5\n",                # indented, tab
    )
    d = read_obj(p)
    np.testing.assert_array_equal(d.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 4], [3, 2, 4]])
    np.testing.assert_array_equal(d.uv_faces, d.faces)
    q = tmp_path / "vn.obj"
    q.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nv 2 2 0\nvn 0 0 1\n"
                 "f 1//1 2//1 3//1 4//1 5//1\nf 1 2 4\n")
    d = read_obj(q)  # pentagon fan + mixed forms
    np.testing.assert_array_equal(d.faces, [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 1, 3]])
    assert d.uv_faces is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("v 0 0 0\nv 1 0 0\nv 0 nan 0\nf 1 2 3\n", "NaN/inf"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n", "vertex 7"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", "malformed 'f'"),
        ("v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n", "malformed 'v'"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "at least 3"),
        ("", "empty mesh"),
    ],
)
def test_malformed_obj_raises_named_error(tmp_path: Path, body: str, problem: str) -> None:
    p = tmp_path / "bad.obj"
    p.write_text(body)
    with pytest.raises(ScanError, match=problem) as e:
        load_scan(p)
    assert e.value.path == p


def test_material_texture_resolution_and_errors(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "tex dir").mkdir()
    img = np.zeros((6, 5, 3), np.uint8)
    img[..., 0] = np.arange(6)[:, None] * 40  # smooth, so jpeg keeps it
    Image.fromarray(img).save(tmp_path / "tex dir" / "skin map.jpg", quality=100)
    geom = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
    (tmp_path / "a.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd -s 1 1 1 tex dir\\skin map.jpg\n"
                                    "newmtl other\nmap_Kd other.png\n")
    ok = tmp_path / "ok.obj"
    ok.write_text("mtllib a.mtl\n" + geom + "usemtl skin\nf 1/1 2/2 3/3\n")
    scan = load_scan(ok, require_texture=True)
    assert scan.texture.shape == (6, 5, 3)
    assert np.abs(scan.texture.astype(int) - img).mean() < 10  # jpeg

    two = tmp_path / "two.obj"
    faces = "usemtl skin\nf 1/1 2/2 3/3\nusemtl other\nf 3/3 2/2 1/1\n"
    two.write_text("mtllib a.mtl\n" + geom + faces)
    # Several textures are packed into one (test_io_atlas.py); each must exist.
    with pytest.raises(ScanError, match="texture file not found: .*other.png"):
        load_scan(two)

    (tmp_path / "b.mtl").write_text("newmtl skin\nmap_Kd missing.png\n")
    missing = tmp_path / "missing.obj"
    missing.write_text("mtllib b.mtl\n" + geom + "usemtl skin\nf 1/1 2/2 3/3\n")
    with pytest.raises(ScanError, match="texture file not found: .*missing.png"):
        load_scan(missing)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "c.mtl").write_text("newmtl skin\nmap_Kd broken.png\n")
    broken = tmp_path / "broken.obj"
    broken.write_text("mtllib c.mtl\n" + geom + "usemtl skin\nf 1/1 2/2 3/3\n")
    with pytest.raises(ScanError, match="broken.png is not a readable image"):
        load_scan(broken)

    plain = tmp_path / "plain.obj"
    plain.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert not load_scan(plain).has_texture
    with pytest.raises(ScanError, match="no texture coordinates"):
        load_scan(plain, require_texture=True)

    # An exporter's material template names a texture the faces cannot use (v//vn, no vt):
    # the geometry is loaded untextured, and said so, rather than refused.
    normals_only = tmp_path / "normals_only.obj"
    normals_only.write_text("mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\n"
                            "usemtl skin\nf 1//1 2//1 3//1\n")
    scan = load_scan(normals_only)
    assert not scan.has_texture and scan.texture is None and len(scan.faces) == 1
    assert any("names a texture (skin map.jpg)" in n and "loaded untextured" in n
               for n in scan.notes)


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    v, f, _, _ = _cube_with_seams()
    out = write_obj(tmp_path / "keep.obj", v, f)
    before = out.read_bytes()
    with pytest.raises(ValueError):
        write_obj(out, v, f, uv=np.zeros((3, 2)))  # uv neither per-vertex nor indexed
    with pytest.raises(TypeError):
        write_obj(out, v, f, normals=object())  # fails while formatting
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.obj"]


def test_flame_obj_keeps_5023_vertices(flame_dir: Path) -> None:
    d = read_obj(flame_dir / "head_template.obj")
    assert d.vertices.shape == (5023, 3) and d.faces.shape == (9976, 3)
    assert d.uv.shape == (5118, 2) and d.uv_faces.shape == (9976, 3)


def test_vertex_colours_on_v_lines_are_read(tmp_path: Path, small_synthetic_head) -> None:
    """``v x y z r g b`` (scanners, MeshLab): colours 0-1 or 0-255 become the scan's vertex
    colours, which detection and the texture bake use when there is no texture."""
    from vertex_colours import vertex_colour_scan

    coloured = vertex_colour_scan(small_synthetic_head.scan)
    v, c = coloured.vertices, coloured.vertex_colors
    faces = "".join(f"f {a} {b} {d}\n" for a, b, d in coloured.faces + 1)
    for name, scale, fmt in (("unit.obj", 1 / 255, "{:.6f}"), ("bytes.obj", 1, "{:.0f}")):
        rows = "".join("v {:.7f} {:.7f} {:.7f} ".format(*p) + " ".join(
            fmt.format(x * scale) for x in rgb) + "\n" for p, rgb in zip(v, c, strict=True))
        (tmp_path / name).write_text(rows + faces)
        scan = load_scan(tmp_path / name)
        assert not scan.has_texture
        np.testing.assert_array_equal(scan.vertex_colors, c)
    # Not every v line has a colour, or the extra column is a homogeneous w: no colours.
    (tmp_path / "mixed.obj").write_text("v 0 0 0 1 0 0\nv 1 0 0\nv 0 1 0 0 0 1\nf 1 2 3\n")
    (tmp_path / "w.obj").write_text("v 0 0 0 1\nv 1 0 0 1\nv 0 1 0 1\nf 1 2 3\n")
    assert load_scan(tmp_path / "mixed.obj").vertex_colors is None
    assert load_scan(tmp_path / "w.obj").vertex_colors is None


def test_textures_past_pillows_bomb_guard_load_and_absurd_ones_are_named(
        tmp_path: Path, monkeypatch) -> None:
    """Pillow refuses images past ~13400² (a decompression-bomb guard); 16K photogrammetry
    textures are common, so reflame reads up to 32768² and names the file past that. The
    limit is shrunk here so the test images stay small."""
    from PIL import Image

    import reflame_core.io.image as image_module
    from reflame_core.io.image import allow_large_images

    allow_large_images()
    assert 2 * Image.MAX_IMAGE_PIXELS >= 16384**2
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    monkeypatch.setattr(image_module, "MAX_TEXTURE_PIXELS", 200 * 200)
    geom = "mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl skin\n"
    (tmp_path / "a.obj").write_text(geom + "f 1/1 2/2 3/3\n")
    (tmp_path / "a.mtl").write_text("newmtl skin\nmap_Kd tex.png\n")
    Image.new("RGB", (180, 180), (10, 200, 30)).save(tmp_path / "tex.png")  # past Pillow's
    assert load_scan(tmp_path / "a.obj").texture[0, 0].tolist() == [10, 200, 30]
    Image.new("RGB", (260, 260)).save(tmp_path / "tex.png")  # past reflame's
    with pytest.raises(ScanError, match="tex.png is larger than"):
        load_scan(tmp_path / "a.obj")


@pytest.mark.parametrize("mtl", [
    "newmtl skin\nmap_Kd -clamp on -blendu off -blendv off tex.png\n",
    "newmtl skin\nmap_Kd  -s  1 1 1  -imfchan l tex.png\n",
    "newmtl skin\nmap_kd tex.png\n",  # lower case, as some exporters write it
])
def test_texture_options_of_every_kind_are_read_past(tmp_path: Path, mtl: str) -> None:
    from PIL import Image

    Image.new("RGB", (4, 4), (200, 100, 50)).save(tmp_path / "tex.png")
    (tmp_path / "a.mtl").write_text(mtl)
    obj = tmp_path / "a.obj"
    obj.write_text("mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
                   "usemtl skin\nf 1/1 2/2 3/3\n")
    assert load_scan(obj, require_texture=True).texture[0, 0].tolist() == [200, 100, 50]


def test_encodings_and_several_libraries_on_one_line(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp_path / "tex.png")
    (tmp_path / "a.mtl").write_text("newmtl skin\nmap_Kd tex.png\n")
    (tmp_path / "b.mtl").write_text("newmtl other\nKd 1 1 1\n")
    body = ("mtllib a.mtl b.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0  # apex\nvt 0 0\nvt 1 0\nvt 0 1\n"
            "usemtl skin\nf 1/1 2/2 3/3 # the only face\n")
    for name, data in (("bom.obj", b"\xef\xbb\xbf" + body.encode()),
                       ("utf16.obj", body.encode("utf-16"))):
        (tmp_path / name).write_bytes(data)
        scan = load_scan(tmp_path / name, require_texture=True)  # the first line read too
        assert len(scan.vertices) == 3 and scan.notes == []
    (tmp_path / "binary.obj").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(64))
    with pytest.raises(ScanError, match="binary.obj: the file is binary data, not text"):
        load_scan(tmp_path / "binary.obj")


def test_a_line_continued_with_a_backslash_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "continued.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 \\\n  3 4\nf 1 2 \\  \r\n4\n")
    d = read_obj(p)
    np.testing.assert_array_equal(d.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 3]])
    # The lines a continuation took stay counted: an error names the file's own line.
    p.write_text("v 0 0 \\\n0\nv 1 0 0\nv 0 1 0\nf 1 2 \\\n3\nf 1 2 9\n")
    with pytest.raises(ScanError, match="line 7: face refers to vertex 9"):
        read_obj(p)


def test_line_ends_and_faces_of_mixed_corner_counts_at_the_end(tmp_path: Path) -> None:
    quad_then_tri = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\nf 1 2 3"  # no final newline
    (tmp_path / "mixed.obj").write_text(quad_then_tri)
    assert read_obj(tmp_path / "mixed.obj").faces.shape == (3, 3)
    (tmp_path / "cut.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 3\nf 1 2")
    with pytest.raises(ScanError, match="line 5: the file ends in the middle"):
        read_obj(tmp_path / "cut.obj")
    # Old Mac line ends (CR only) with indented lines.
    (tmp_path / "cr.obj").write_bytes(b"  v 0 0 0\r  v 1 0 0\r  v 0 1 0\r  f 1 2 3\r")
    assert read_obj(tmp_path / "cr.obj").faces.shape == (1, 3)


def test_a_decimal_comma_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "comma.obj").write_text("v 0 0 0\nv 1,5 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ScanError, match=r"line 2: '1,5' is not a number \(a decimal comma"):
        load_scan(tmp_path / "comma.obj")


def _textured_triangle(folder: Path, header: str, faces: str = "usemtl skin\nf 1/1 2/2 3/3\n",
                       mtl_name: str = "head.mtl", mtl: str = "newmtl skin\nmap_Kd tex.png\n"
                       ) -> Path:
    from PIL import Image

    Image.new("RGB", (4, 4), (200, 100, 50)).save(folder / "tex.png")
    (folder / mtl_name).write_text(mtl)
    obj = folder / "head.obj"
    obj.write_text(header + "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n" + faces)
    return obj


@pytest.mark.parametrize("mtllib", ["mtllib C:\\Users\\me\\export\\head.mtl\n",
                                    "mtllib .\\head.mtl\n", "mtllib HEAD.MTL\n"],
                         ids=["windows_path", "dot_backslash", "other_case"])
def test_a_material_library_named_as_another_machine_wrote_it_is_found(
        tmp_path: Path, mtllib: str) -> None:
    scan = load_scan(_textured_triangle(tmp_path, mtllib), require_texture=True)
    assert scan.texture[0, 0].tolist() == [200, 100, 50] and scan.notes == []


def test_faces_that_name_no_material_take_the_only_texture(tmp_path: Path) -> None:
    obj = _textured_triangle(tmp_path, "mtllib head.mtl\n", faces="f 1/1 2/2 3/3\n")
    scan = load_scan(obj, require_texture=True)
    assert scan.texture[0, 0].tolist() == [200, 100, 50]
    assert scan.notes == ["no face names a material (usemtl): the only textured one, skin, "
                          "is used for all"]
    # Two textured materials and no usemtl: which one is meant cannot be told, and it is said.
    (tmp_path / "head.mtl").write_text("newmtl skin\nmap_Kd tex.png\nnewmtl eye\nmap_Kd e.png\n")
    scan = load_scan(obj)
    assert not scan.has_texture and "2 textured ones" in scan.notes[0]
