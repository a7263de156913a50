"""A corpus of hostile inputs, generated here (no committed binaries).

Every case ends in either a clear error (non-zero exit, no traceback, the last stderr line
``reflame <cmd>: ...`` naming the problem) or a correct result, and never loses a file the
user already had. The CLI runs in-process (``main([...])``) except for the signal tests.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reflame_core.cli import join_axis_values, main
from reflame_core.io.atomic import TEMP_SUFFIX, atomic_write, write_json_atomic
from reflame_core.io.scan import load_scan
from reflame_core.landmarks.definitions import landmark_definitions
from reflame_core.landmarks.landmark_json import landmarks_to_dict, save_landmarks
from reflame_core.landmarks.landmark_set import LandmarkSet

REPO = Path(__file__).resolve().parent.parent

# The smallest fit that runs every stage but the texture bake: seconds on 2 cores.
TINY = [
    "--preset", "fast", "--device", "cpu", "--quiet",
    "--set", "cameras.num_views=1", "--set", "cameras.resolution=32",
    "--set", "stages.coarse.steps=2", "--set", "stages.refine.steps=1",
    "--set", "stages.coarse.surface_samples=200", "--set", "stages.refine.surface_samples=200",
    "--set", "stages.texture.enabled=false",
]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path, flame_dir):
    """FLAME from the environment; a private, empty user config folder."""
    monkeypatch.setenv("REFLAME_FLAME_DIR", str(flame_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``reflame argv``: (exit code, stdout, stderr); argparse's exits are codes too."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_clear_error(code: int, err: str, command: str, *needles: str) -> str:
    """Non-zero exit, no traceback, and the last stderr line is ``reflame <command>: ...``
    containing every needle; returns that line."""
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"reflame {command}: "), err
    for needle in needles:
        assert needle in last, (needle, last)
    return last


def icosphere_obj(folder: Path, name: str = "head.obj") -> Path:
    """A 42-vertex sphere of radius 1 as OBJ: a tiny closed 'scan'."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=1)
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def spread_landmarks(scan_path: Path) -> LandmarkSet:
    """68 landmarks on distinct faces of the sphere: a plausible set for the checks."""
    scan = load_scan(scan_path)
    n = len(scan.faces)
    return LandmarkSet(names=landmark_definitions().ibug_names, num_faces=n,
                       face_idx=np.arange(68) % n, bary=np.full((68, 3), 1 / 3),
                       confidence=np.ones(68))


@pytest.fixture
def sphere(tmp_path) -> Path:
    return icosphere_obj(tmp_path)


# --------------------------------------------------------------------------- scan files

TRI = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"

BAD_SCANS: list[tuple[str, bytes | str, str]] = [
    ("empty.obj", b"", "no vertices"),
    ("junk.obj", np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes(), "junk.obj"),
    ("scan.txt", TRI + "f 1 2 3\n", "unsupported file type .txt"),
    ("scan", TRI + "f 1 2 3\n", "unsupported file type (none)"),
    ("scan.stl", b"solid x\nendsolid x\n", "unsupported file type .stl"),
    ("nan.obj", "v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN/inf"),
    ("inf.obj", "v inf 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN/inf"),
    ("float32_overflow.obj", "v 1e39 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "too large"),
    ("huge.obj", "v 1e300 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "too large"),
    ("index_high.obj", TRI + "f 1 2 9\n", "line 4: face refers to vertex 9"),
    ("index_negative.obj", TRI + "f -1 -2 -9\n", "line 4"),
    ("index_zero.obj", TRI + "f 0 1 2\n", "line 4"),
    ("index_float.obj", TRI + "f 1.5 2 3\n", "non-integer"),
    ("two_corners.obj", TRI + "f 1 2\n", "at least 3 corners"),
    ("no_faces.obj", TRI, "no faces"),
    ("one_point.obj", "v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n", "degenerate"),
    ("collinear.obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\nf 3 2 1\n", "zero area"),
    ("bad_number.obj", "v 0 0 zero\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "malformed 'v'"),
    ("short_v.obj", "v 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "malformed 'v'"),
    # Cut mid-file: the faces refer to vertices the file no longer has.
    ("cut_vertices.obj", "v 0 0 0\nv 1 0 0\nf 1 2 3\n", "face refers to vertex 3"),
    # Cut mid-line: the last record lacks its end.
    ("cut_face.obj", TRI + "vt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\nf 1/1 2/2 3/", "truncated"),
    ("cut_color.obj", "v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0", "truncated"),
    ("uv_index_high.obj", TRI + "vt 0 0\nf 1/1 2/2 3/3\n", "texture coordinate 2"),
    ("empty.ply", b"", "empty.ply"),
    ("junk.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n", "junk.ply"),
    ("empty.glb", b"", "empty.glb"),
    ("junk.glb", b"glTF\x02\x00\x00\x00" + b"\xff" * 40, "junk.glb"),
    ("junk.gltf", b"{not json", "junk.gltf"),
    ("dangling.gltf", json.dumps({"asset": {"version": "2.0"}, "buffers": [
        {"uri": "missing.bin", "byteLength": 36}]}).encode(), "dangling.gltf"),
]


@pytest.mark.parametrize("name,content,needle", BAD_SCANS, ids=[c[0] for c in BAD_SCANS])
def test_bad_scan_is_one_clear_line(tmp_path, capsys, name, content, needle):
    scan = tmp_path / name
    scan.write_bytes(content.encode() if isinstance(content, str) else content)
    code, _, err = run(capsys, "fit", scan, "--out", tmp_path / "out", *TINY)
    assert_clear_error(code, err, "fit", needle)
    assert not (tmp_path / "out").exists()  # checked before anything was created


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize("ext", ["ply", "glb", "obj"])
def test_truncated_binary_formats_fail_clearly(tmp_path, capsys, ext):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=2)
    whole = tmp_path / f"whole.{ext}"
    mesh.export(whole)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(_cut(whole.read_bytes()))
    code, _, err = run(capsys, "fit", cut, "--out", tmp_path / "out", *TINY)
    assert_clear_error(code, err, "fit", f"cut.{ext}")


def test_missing_scan_and_folder_named_like_a_scan(tmp_path, capsys):
    code, _, err = run(capsys, "fit", tmp_path / "nowhere.obj", "--out", tmp_path / "o", *TINY)
    assert_clear_error(code, err, "fit", "nowhere.obj", "file not found")
    (tmp_path / "dir.obj").mkdir()
    code, _, err = run(capsys, "fit", tmp_path / "dir.obj", "--out", tmp_path / "o", *TINY)
    assert_clear_error(code, err, "fit", "dir.obj", "is a folder: give the scan file")
    code, _, err = run(capsys, "fit", tmp_path, "--out", tmp_path / "o", *TINY)
    assert_clear_error(code, err, "fit", str(tmp_path), "is a folder", "reflame batch")


def test_an_output_folder_where_nothing_can_be_written_fails_before_any_work(
        sphere, tmp_path, capsys):
    """Permission bits say yes on a pseudo file system (and to root everywhere); the fit
    must still fail at once, not after loading and detecting."""
    code, _, err = run(capsys, "fit", sphere, "--out", "/proc/reflame_out", *TINY)
    assert_clear_error(code, err, "fit", "/proc/reflame_out", "cannot write in /proc")
    assert "landmarks" not in err and "frame" not in err


def test_crlf_obj_loads_correctly(tmp_path):
    path = tmp_path / "crlf.obj"
    path.write_bytes(b"v 0 0 0\r\nv 1 0 0\r\nv 0 1 0\r\nf 1 2 3\r\n")
    scan = load_scan(path)
    assert scan.vertices.shape == (3, 3) and scan.faces.tolist() == [[0, 1, 2]]


def test_obj_without_final_newline_is_fine_when_complete(tmp_path):
    path = tmp_path / "nonl.obj"
    path.write_text(TRI + "f 1 2 3")
    assert load_scan(path).faces.tolist() == [[0, 1, 2]]


# --------------------------------------------------------------------------- textures


def textured_quad(folder: Path, texture_name: str, mtl_text: str | None = None) -> Path:
    """Two triangles with UVs using ``texture_name`` through an MTL (written as bytes, so
    the name may be any encoding)."""
    obj = folder / "quad.obj"
    obj.write_text("mtllib quad.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
                   "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl skin\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    mtl = (mtl_text or "newmtl skin\nmap_Kd ").encode() + texture_name.encode("latin-1") + b"\n"
    (folder / "quad.mtl").write_bytes(mtl)
    return obj


def test_mtl_pointing_to_a_missing_texture(tmp_path, capsys):
    obj = textured_quad(tmp_path, "gone.png")
    code, _, err = run(capsys, "fit", obj, "--out", tmp_path / "o", *TINY)
    assert_clear_error(code, err, "fit", "quad.obj", "texture file not found", "gone.png")


@pytest.mark.parametrize("kind", ["junk_png", "truncated_png", "truncated_jpeg"])
def test_corrupt_texture_image(tmp_path, capsys, kind):
    good = io.BytesIO()
    fmt = "JPEG" if kind.endswith("jpeg") else "PNG"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(
        good, format=fmt)
    name = "tex.jpg" if fmt == "JPEG" else "tex.png"
    data = b"\x89PNG not really" if kind == "junk_png" else good.getvalue()[:300]
    (tmp_path / name).write_bytes(data)
    obj = textured_quad(tmp_path, name)
    code, _, err = run(capsys, "fit", obj, "--out", tmp_path / "o", *TINY)
    assert_clear_error(code, err, "fit", "quad.obj", name, "not a readable image")


GREY_128 = 128


def _write_texture(path: Path, kind: str) -> None:
    if kind == "grey16":
        Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(path)  # 32896 / 257 = 128
    elif kind == "grey8":
        Image.fromarray(np.full((8, 8), GREY_128, np.uint8), mode="L").save(path)
    elif kind == "rgba":
        Image.fromarray(np.full((8, 8, 4), [GREY_128, GREY_128, GREY_128, 10], np.uint8),
                        mode="RGBA").save(path)
    elif kind == "float":
        Image.fromarray(np.full((8, 8), GREY_128 / 255, np.float32), mode="F").save(path)
    elif kind == "palette":
        Image.fromarray(np.full((8, 8, 3), GREY_128, np.uint8)).convert(
            "P", palette=Image.Palette.ADAPTIVE).save(path)


@pytest.mark.parametrize("kind,ext", [("grey16", "png"), ("grey8", "png"), ("rgba", "png"),
                                      ("float", "tif"), ("palette", "png")])
def test_texture_pixel_formats_load_as_the_same_grey(tmp_path, kind, ext):
    _write_texture(tmp_path / f"tex.{ext}", kind)
    scan = load_scan(textured_quad(tmp_path, f"tex.{ext}"), require_texture=True)
    assert scan.texture.dtype == np.uint8 and scan.texture.shape == (8, 8, 3)
    assert np.abs(scan.texture.astype(int) - GREY_128).max() <= 1, kind


def test_latin1_texture_name_in_mtl_is_found(tmp_path):
    name = "t\xeate.png"  # "tête.png" written in latin-1 by an old exporter
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(
        os.fsdecode(bytes(tmp_path) + b"/" + name.encode("latin-1")))
    scan = load_scan(textured_quad(tmp_path, name), require_texture=True)
    assert scan.texture.mean() == 200


def test_missing_mtl_file_gives_an_untextured_scan(tmp_path):
    obj = tmp_path / "nomtl.obj"
    obj.write_text("mtllib missing.mtl\n" + TRI + "usemtl x\nf 1 2 3\n")
    assert not load_scan(obj).has_texture


# --------------------------------------------------------------------------- landmark files


def _landmark_doc(sphere: Path) -> dict:
    scan = load_scan(sphere)
    return landmarks_to_dict(spread_landmarks(sphere), scan.vertices, scan.faces)


def _edit(doc: dict, what: str) -> bytes | str | dict:
    lm = doc["landmarks"]
    if what == "version_99":
        doc["version"] = 99
    elif what == "version_text":
        doc["version"] = "1"
    elif what == "format":
        doc["format"] = "something-else"
    elif what == "num_faces":
        doc["scan"]["num_faces"] += 1
    elif what == "too_few":
        del lm[10:]
    elif what == "face_high":
        lm[3]["face"] = 10**6
    elif what == "face_float":
        lm[3]["face"] = 1.5
    elif what == "bary_sum":
        lm[3]["bary"] = [1.0, 1.0, 1.0]
    elif what == "bary_short":
        lm[3]["bary"] = [1.0]
    elif what == "confidence_high":
        lm[3]["confidence"] = 7
    elif what == "weight_negative":
        lm[3]["weight"] = -1
    elif what == "collapsed":
        for e in lm:
            e["face"] = 0
            e.pop("position", None)
    elif what == "other_scan":
        for e in lm:
            if "position" in e:
                e["position"] = [p + 5.0 for p in e["position"]]
    elif what == "nan_position":
        lm[0]["position"] = [float("nan"), 0.0, 0.0]
    elif what == "all_weight_0":
        for e in lm:
            e["weight"] = 0.0
    return doc


BAD_LANDMARKS: list[tuple[str, str]] = [
    ("invalid_json", "not valid JSON"),
    ("empty", "not valid JSON"),
    ("not_utf8", "not UTF-8"),
    ("top_level_list", "top level"),
    ("nan_bary", "bary"),
    ("nan_confidence", "confidence"),
    ("version_99", "newer"),
    ("version_text", "version"),
    ("format", "not a landmark file"),
    ("num_faces", "faces"),
    ("too_few", "68"),
    ("face_high", "face id"),
    ("face_float", "face id"),
    ("bary_sum", "sum to 1"),
    ("bary_short", "3 numbers"),
    ("confidence_high", "confidence"),
    ("weight_negative", "weight"),
    ("collapsed", "collapsed"),
    ("other_scan", "another scan, or its 'position' was edited by hand"),
    ("nan_position", "'position' must be 3 finite numbers"),
    ("all_weight_0", "weigh 0"),
]


@pytest.mark.parametrize("what,needle", BAD_LANDMARKS, ids=[c[0] for c in BAD_LANDMARKS])
def test_bad_landmark_file_is_one_clear_line(sphere, tmp_path, capsys, what, needle):
    path = tmp_path / "lm.json"
    doc = _landmark_doc(sphere)
    if what == "invalid_json":
        path.write_text("{\"format\": ")
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "not_utf8":
        path.write_bytes(b"\xff\xfe{}")
    elif what == "top_level_list":
        path.write_text("[]")
    elif what == "nan_bary":
        path.write_text(json.dumps(doc).replace('"bary": [', '"bary": [NaN, ', 1))
    elif what == "nan_confidence":
        doc["landmarks"][0]["confidence"] = float("nan")
        path.write_text(json.dumps(doc))
    else:
        path.write_text(json.dumps(_edit(doc, what)))
    before = path.read_bytes()
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--landmarks", path, *TINY)
    assert_clear_error(code, err, "fit", "lm.json", needle)
    assert path.read_bytes() == before and not (tmp_path / "o").exists()


def test_missing_landmark_file(sphere, tmp_path, capsys):
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--landmarks",
                       tmp_path / "nope.json", *TINY)
    assert_clear_error(code, err, "fit", "nope.json", "cannot read")


# --------------------------------------------------------------------------- settings

BAD_SETTINGS: list[tuple[list[str], str]] = [
    (["--set", "stages.coarse.stepz=3"], "unknown setting 'stages.coarse.stepz'"),
    (["--set", "nosuch=1"], "unknown setting 'nosuch'"),
    (["--set", "stages.coarse.steps=abc"], "'stages.coarse.steps' must be a whole number"),
    (["--set", "stages.coarse.steps=-5"], "'stages.coarse.steps' must be >= 0, got -5"),
    (["--set", "stages.coarse.steps=12.5"], "whole number, got 12.5"),
    (["--set", "stages.coarse.lr=nan"], "'stages.coarse.lr' must be a finite number"),
    (["--set", "stages.refine.lr=0"], "'stages.refine.lr' must be > 0"),
    (["--set", "stages.refine.lr=-inf"], "'stages.refine.lr' must be a finite number"),
    (["--set", "cameras.num_views=0"], "'cameras.num_views' must be >= 1, got 0"),
    (["--set", "cameras.resolution=0"], "'cameras.resolution'"),
    (["--set", "cameras.fov_deg=180"], "'cameras.fov_deg' must be < 180"),
    (["--set", "cameras.elevations=[95.0]"], "'cameras.elevations'"),
    (["--set", "cameras.elevations=[]"], "'cameras.elevations'"),
    (["--set", "stages.coarse.enabled=yes"], "true or false"),
    (["--set", "stages.coarse=3"], "'stages.coarse' must be a table"),
    (["--set", "stages.coarse.w_mask=-1"], "'stages.coarse.w_mask' must be >= 0"),
    (["--set", "stages.coarse.min_normal_cos=2"], "'stages.coarse.min_normal_cos'"),
    (["--set", "regions.face=nan"], "'regions.face'"),
    (["--set", "stages.coarse.surface_samples=0"], "surface_samples"),
    (["--set", "stages.eyeballs.max_surface_shift=0"],
     "'stages.eyeballs.max_surface_shift' must be > 0"),
    (["--set", "no_equals_sign"], "must look like section.key=value"),
    (["--up", "sideways"], "'frame.up' must be one of +x -x +y -y +z -z, got 'sideways'"),
    (["--up", "+z", "--front", "-z"], "must be different axes"),
]


@pytest.mark.parametrize("extra,needle", BAD_SETTINGS,
                         ids=[" ".join(c[0]) for c in BAD_SETTINGS])
def test_bad_setting_is_one_clear_line(sphere, tmp_path, capsys, extra, needle):
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", *TINY, *extra)
    assert_clear_error(code, err, "fit", needle)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content,needle", [
    (b"[stages.coarse]\nsteps = -1\n", "must be >= 0"),
    (b"[stages.coarse\n", "not valid TOML"),
    (b"\xff\xfe[x]\n", "not UTF-8"),
    (b"[cameras]\nnum_views = 2.5\n", "whole number"),
])
def test_bad_config_file(sphere, tmp_path, capsys, content, needle):
    cfg = tmp_path / "my.toml"
    cfg.write_bytes(content)
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--config", cfg, *TINY)
    assert_clear_error(code, err, "fit", "my.toml", needle)


def test_missing_config_file_and_unknown_preset(sphere, tmp_path, capsys):
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--config",
                       tmp_path / "none.toml")
    assert_clear_error(code, err, "fit", "none.toml", "not found")
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--preset", "turbo")
    assert code == 2 and "Traceback" not in err and "invalid choice: 'turbo'" in err


def test_axis_values_that_look_like_options_parse():
    assert join_axis_values(["fit", "s.obj", "--up", "+z", "--front", "-y"]) == [
        "fit", "s.obj", "--up=+z", "--front=-y"]


def test_readme_axis_example_reaches_the_settings(sphere, tmp_path, capsys):
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--up", "+z",
                       "--front", "-y", "--set", "stages.coarse.steps=-1")
    assert_clear_error(code, err, "fit", "stages.coarse.steps")  # parsed past --front -y


# --------------------------------------------------------------------------- output paths


def test_out_that_is_a_file_fails_at_once_and_keeps_the_file(sphere, tmp_path, capsys):
    target = tmp_path / "results"
    target.write_text("my notes")
    code, _, err = run(capsys, "fit", sphere, "--out", target, *TINY)
    assert_clear_error(code, err, "fit", "results", "is an existing file")
    assert target.read_text() == "my notes"


def test_out_under_a_file_fails_at_once(sphere, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "file" / "sub", *TINY)
    assert_clear_error(code, err, "fit", "cannot create the output folder")


def test_landmarks_out_checked_before_detection(sphere, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "landmarks", sphere, "--out", tmp_path / "file" / "lm.json")
    assert_clear_error(code, err, "landmarks", "existing file")
    (tmp_path / "adir").mkdir()
    code, _, err = run(capsys, "landmarks", sphere, "--out", tmp_path / "adir")
    assert_clear_error(code, err, "landmarks", "existing folder")
    code, _, err = run(capsys, "landmarks", sphere, "--out", tmp_path / "lm.json", "--up", "up")
    assert_clear_error(code, err, "landmarks", "--up 'up'")


def test_fit_backs_up_outputs_cleans_stale_temps_writes_valid_json(
        sphere, tmp_path, capsys):
    """A second fit into a folder with a user's files: they are kept as backups, temp files
    a killed run left are removed, JSON is strict, files get the umask's mode."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("my report")
    (out / "landmarks.json").write_text("my landmarks")
    (out / f".fit.obj.dead{TEMP_SUFFIX}").write_text("")
    lm = tmp_path / "lm.json"
    save_landmarks(lm, spread_landmarks(sphere))
    old = os.umask(0o022)
    try:
        code, _, err = run(capsys, "fit", sphere, "--out", out, "--landmarks", lm, *TINY)
    finally:
        os.umask(old)
    assert code == 0, err
    backups = {p.read_text() for p in out.glob("*.bak.json")}
    assert backups == {"my report", "my landmarks"}
    assert "kept the existing" in err
    assert not list(out.glob(f".*{TEMP_SUFFIX}"))
    report = json.loads((out / "report.json").read_text(), parse_constant=_no_constants)
    assert report["interrupted"] is False
    assert (out / "fit.obj").stat().st_mode & 0o777 == 0o644


def _no_constants(name: str):
    raise AssertionError(f"{name} in JSON")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")

    def fail(path: Path) -> None:
        path.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    write_json_atomic(target, {"x": float("nan"), "y": [float("inf"), 1.0]})
    assert json.loads(target.read_text()) == {"x": None, "y": [None, 1.0]}


# --------------------------------------------------------------------------- untextured scans


def test_untextured_single_triangle_fits_without_landmarks(tmp_path, capsys):
    """No texture, no colours: detection gets RGB renders (MediaPipe crashed on grey ones),
    finds no face, and the fit goes on without landmarks, warned of in report.json (strict
    JSON)."""
    scan = tmp_path / "tri.obj"
    scan.write_text(TRI + "f 1 2 3\n")
    code, _, err = run(capsys, "fit", scan, "--out", tmp_path / "out", *TINY)
    assert code == 0, err
    assert "no face found" in err and "Traceback" not in err
    report = json.loads((tmp_path / "out" / "report.json").read_text(),
                        parse_constant=_no_constants)
    assert report["stages"]["refine"]["iterations"] == 1
    # The report says so too: a batch's summary reads it there, not in the log.
    assert any(w.startswith("fitted without landmarks") for w in report["warnings"])
    assert load_scan(tmp_path / "out" / "fit.obj").vertices.shape == (5023, 3)


def test_grey_render_for_detection_has_three_channels(sphere):
    from reflame_core.landmarks.detect import render_for_detection
    from reflame_core.render.cameras import OrbitCameras

    images, _ = render_for_detection(load_scan(sphere), OrbitCameras(num_views=1, resolution=32))
    assert images.shape == (1, 32, 32, 3) and images.max() > 0


def test_unexpected_detector_failure_is_one_line(sphere, monkeypatch):
    from reflame_core.fit.config import FitConfig
    from reflame_core.fit.setup import detect_or_none
    from reflame_core.landmarks import detect

    def broken(*_a, **_k):
        raise ValueError("Pixel data size is too small: 200704 (expected 602112)")

    monkeypatch.setattr(detect, "detect_landmarks", broken)
    lines: list[str] = []
    assert detect_or_none(load_scan(sphere), FitConfig.load(preset="fast"), "cpu",
                          lines.append) is None
    assert len(lines) == 1 and "Pixel data size" in lines[0] and "without landmarks" in lines[0]


# --------------------------------------------------------------------------- texture command


def _template_fit_dir(folder: Path, template) -> Path:
    from reflame_core.io.obj import write_obj

    folder.mkdir()
    write_obj(folder / "fit.obj", template.vertices, template.faces, uv=template.uv,
              uv_faces=template.uv_faces)
    return folder


def _template_scan(folder: Path, template, texture: np.ndarray, offset: float = 0.0) -> Path:
    """The FLAME template itself as a textured scan (shifted by ``offset`` along x)."""
    from reflame_core.io.obj import write_obj

    path = folder / "scan.obj"
    write_obj(path, template.vertices + [offset, 0, 0], template.faces, uv=template.uv,
              uv_faces=template.uv_faces, texture=np.full((8, 8, 3), 1, np.uint8))
    Image.fromarray(texture).save(folder / "scan.png")  # replace with the format under test
    return path


def test_texture_of_a_scan_that_does_not_match_the_fit_is_an_error(
        tmp_path, capsys, flame_template):
    fit_dir = _template_fit_dir(tmp_path / "fit", flame_template)
    scan = _template_scan(tmp_path, flame_template, np.full((8, 8, 3), 200, np.uint8),
                          offset=100.0)
    code, _, err = run(capsys, "texture", fit_dir, scan, "--resolution", "64")
    assert_clear_error(code, err, "texture", "scan.obj", "0.0%")
    assert not (fit_dir / "fit_textured.png").exists()


def test_texture_16bit_grey_bakes_grey_and_backs_up(tmp_path, capsys, flame_template):
    fit_dir = _template_fit_dir(tmp_path / "fit", flame_template)
    (fit_dir / "fit_textured.png").write_bytes(b"my edited texture")
    scan = _template_scan(tmp_path, flame_template, np.full((8, 8), 32896, np.uint16))
    code, _, err = run(capsys, "texture", fit_dir, scan, "--resolution", "64")
    assert code == 0, err
    baked = np.asarray(Image.open(fit_dir / "fit_textured.png"))
    assert abs(float(np.median(baked)) - GREY_128) <= 2  # was 255: clipped 16-bit values
    assert [p.read_bytes() for p in fit_dir.glob("fit_textured.*.bak.png")] == [
        b"my edited texture"]


def test_texture_bad_resolution(tmp_path, capsys, flame_template):
    fit_dir = _template_fit_dir(tmp_path / "fit", flame_template)
    code, _, err = run(capsys, "texture", fit_dir, tmp_path / "x.obj", "--resolution", "3")
    assert_clear_error(code, err, "texture", "--resolution 3")


# --------------------------------------------------------------------------- FLAME, config, GUI


def test_missing_flame_dir_says_where_to_get_flame(sphere, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REFLAME_FLAME_DIR")
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", *TINY)
    assert code == 2 and "Traceback" not in err
    assert "No FLAME folder configured" in err and "https://flame.is.tue.mpg.de" in err
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--flame-dir",
                       tmp_path / "absent", *TINY)
    assert code == 2 and "does not exist" in err and "flame.is.tue.mpg.de" in err


@pytest.mark.parametrize("content", [b"flame_dir = \"/x\xff\"\n", b"flame_dir = [\n"],
                         ids=["not_utf8", "bad_toml"])
def test_broken_user_config_only_matters_when_needed(sphere, tmp_path, capsys, monkeypatch,
                                                      content):
    cfg = tmp_path / "xdg" / "reflame" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_bytes(content)
    # FLAME comes from the environment: the config is not read, the command goes on.
    code, _, err = run(capsys, "fit", tmp_path / "missing.obj", "--out", tmp_path / "o", *TINY)
    assert_clear_error(code, err, "fit", "missing.obj")
    assert "config.toml" not in err
    # Nothing else set: a warning naming the file, then the usual how-to-get-FLAME error.
    monkeypatch.delenv("REFLAME_FLAME_DIR")
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", *TINY)
    assert code == 2 and "Traceback" not in err
    assert "reflame: warning:" in err and str(cfg) in err and "flame.is.tue.mpg.de" in err


@pytest.mark.parametrize("argv", [[], ["gui"]], ids=["bare", "gui"])
def test_gui_without_its_extra_says_how_to_install(capsys, monkeypatch, argv):
    for name in ("polyscope", "polyscope.imgui"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails: extra not installed
    monkeypatch.delitem(sys.modules, "reflame_app.main", raising=False)
    code, _, err = run(capsys, *argv)
    line = assert_clear_error(code, err, "gui", "polyscope", 'pip install "reflame-studio[gui]"')
    assert code == 2 and len(err.strip().splitlines()) == 1, line


# --------------------------------------------------------------------------- signals


def _start_fit(scan: Path, out: Path, landmarks: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [sys.executable, "-m", "reflame_core.cli", "fit", str(scan), "--out", str(out),
            "--landmarks", str(landmarks), *TINY, "--set", "stages.coarse.steps=100000"]
    args.remove("--quiet")  # the progress bar tells us the fit has started
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _wait_for(proc: subprocess.Popen, marker: bytes, timeout: float = 120.0) -> bytes:
    """Read stderr in a thread until the regular expression ``marker`` matches; returns what
    was read."""
    seen = bytearray()
    found = threading.Event()

    def reader() -> None:
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            seen.extend(chunk)
            if re.search(marker, seen):
                found.set()
        found.set()

    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout), bytes(seen)
    return bytes(seen)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_mid_fit_writes_the_fit_and_records_it(sphere, tmp_path, sig, code):
    lm = tmp_path / "lm.json"
    save_landmarks(lm, spread_landmarks(sphere))
    out = tmp_path / "out"
    proc = _start_fit(sphere, out, lm)
    try:
        _wait_for(proc, rb"coarse: .*\| *[1-9][0-9]*/100000")  # some coarse steps done
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code
    report = json.loads((out / "report.json").read_text(), parse_constant=_no_constants)
    assert report["interrupted"] is True and report["interrupted_by"] == sig.name
    assert 0 < report["stages"]["coarse"]["iterations"] < 100000
    assert report["stages"]["coarse"]["status"] == "interrupted"
    assert report["stages"]["refine"]["status"] == "pending"
    assert load_scan(out / "fit.obj").vertices.shape == (5023, 3)
    assert not list(out.glob(f".*{TEMP_SUFFIX}"))


# --------------------------------------------------------------------------- corrections kept


def test_corrected_landmarks_survive_detect_and_fit(small_synthetic_head, tmp_path, capsys):
    """The lost-corrections story: detect into a folder that does not exist yet, correct the
    file by hand, fit into the same folder (which detects again): the correction is kept as a
    backup. Then the corrected file, given with a wrong --up, draws a loud warning."""
    from reflame_core.synthetic.head import write_synthetic_head

    scan = write_synthetic_head(small_synthetic_head, tmp_path / "scan")
    folder = tmp_path / "new" / "sub"
    lm = folder / "detected_landmarks.json"
    code, out, err = run(capsys, "landmarks", scan, "--out", lm)
    assert code == 0, err
    assert "of 68 iBUG landmarks placed" in out
    doc = json.loads(lm.read_text())
    doc["landmarks"][30]["provenance"] = "edited"  # the user's correction
    lm.write_text(json.dumps(doc))
    corrected = lm.read_text()

    code, _, err = run(capsys, "fit", scan, "--out", folder, *TINY)
    assert code == 0, err
    backups = list(folder.glob("detected_landmarks.*.bak.json"))
    assert [b.read_text() for b in backups] == [corrected]
    assert f"kept the existing {lm}" in err

    code, _, err = run(capsys, "fit", scan, "--out", tmp_path / "flipped", "--landmarks",
                       backups[0], "--up", "-y", "--front", "-z", *TINY)
    assert code == 0, err
    assert "WARNING: the chin is above the eyes along up=-y" in err


def test_landmarks_no_face_found_writes_nothing(sphere, tmp_path, capsys, monkeypatch):
    from reflame_core.landmarks import detect

    def nothing_found(scan, **_kw) -> LandmarkSet:
        return LandmarkSet(names=landmark_definitions().ibug_names, num_faces=len(scan.faces),
                           face_idx=np.full(68, -1), bary=np.full((68, 3), 1 / 3),
                           confidence=np.zeros(68))

    monkeypatch.setattr(detect, "detect_landmarks", nothing_found)
    out = tmp_path / "lm.json"
    out.write_text("mine")
    code, _, err = run(capsys, "landmarks", sphere, "--out", out)
    assert_clear_error(code, err, "landmarks", "head.obj", "no face found", "nothing written")
    assert out.read_text() == "mine" and list(tmp_path.glob("lm.*")) == [out]


def test_gui_session_file_is_strict_json_and_atomic(tmp_path):
    from reflame_app.session_file import SessionData, save_session

    path = save_session(tmp_path / "s.json",
                        SessionData(overrides={"stages.coarse.lr": float("nan")}))
    assert json.loads(path.read_text(), parse_constant=_no_constants)["overrides"] == {
        "stages.coarse.lr": None}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


# --------------------------------------------------------------------------- FLAME folder files


@pytest.mark.parametrize("broken,how", [
    ("flame_template.npz", "truncated"), ("flame_template.npz", "junk"),
    ("flame_template.npz", "empty"), ("landmark_embedding.npy", "truncated"),
    ("landmark_embedding.npy", "junk"),
])
def test_corrupt_flame_files_are_named(sphere, tmp_path, capsys, flame_dir, broken, how):
    folder = tmp_path / "flame"
    folder.mkdir()
    for name in ("flame_template.npz", "landmark_embedding.npy"):
        data = (flame_dir / name).read_bytes()
        if name == broken:
            data = {"truncated": data[: len(data) // 3], "junk": b"\x00junk" * 100,
                    "empty": b""}[how]
        (folder / name).write_bytes(data)
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "o", "--flame-dir", folder,
                       *TINY)
    assert_clear_error(code, err, "fit", broken, "cannot read")


# --------------------------------------------------------------------------- texture inputs


@pytest.mark.parametrize("case,needle", [
    ("no_fit_dir", "fit.obj: not found"),
    ("fit_not_flame", "not FLAME's 5023"),
    ("untextured_scan", "no texture coordinates"),
    ("out_is_file", "is an existing file"),
    ("negative_refine", "--refine-steps -1"),
])
def test_bad_texture_inputs(tmp_path, capsys, flame_template, sphere, case, needle):
    fit_dir = _template_fit_dir(tmp_path / "fit", flame_template)
    scan = _template_scan(tmp_path, flame_template, np.full((8, 8, 3), 200, np.uint8))
    extra: list = []
    if case == "no_fit_dir":
        fit_dir = tmp_path / "nowhere"
    elif case == "fit_not_flame":
        (fit_dir / "fit.obj").write_text(sphere.read_text())
    elif case == "untextured_scan":
        scan = sphere
    elif case == "out_is_file":
        (tmp_path / "file").write_text("mine")
        extra = ["--out", tmp_path / "file"]
    elif case == "negative_refine":
        extra = ["--refine-steps", "-1"]
    code, _, err = run(capsys, "texture", fit_dir, scan, "--resolution", "32", *extra)
    assert_clear_error(code, err, "texture", needle)
    assert not list(tmp_path.rglob("fit_textured*"))


def test_eyes_a_speck_apart_are_implausible():
    """Landmarks on distinct faces of a fine sphere, but the outer eye corners on two
    neighbouring faces: not a face at this scan's size."""
    import trimesh

    from reflame_core.landmarks.plausibility import landmark_problems

    mesh = trimesh.creation.icosphere(subdivisions=5)  # faces ~1% of its size apart
    faces = np.asarray(mesh.faces)
    neighbour = int(mesh.face_adjacency[0][1])
    face_idx = np.arange(100, 168)

    def problems_with_eyes_on(right: int, left: int) -> list[str]:
        f = face_idx.copy()
        f[36], f[45] = right, left
        lms = LandmarkSet(names=landmark_definitions().ibug_names, num_faces=len(faces),
                          face_idx=f, bary=np.full((68, 3), 1 / 3), confidence=np.ones(68))
        return landmark_problems(lms, np.asarray(mesh.vertices), faces)

    near = problems_with_eyes_on(int(mesh.face_adjacency[0][0]), neighbour)
    assert len(near) == 1 and "outer eye corners" in near[0]
    assert problems_with_eyes_on(0, 20000) == []  # far across the sphere: plausible


def test_a_detection_that_found_too_few_landmarks_failed():
    """A detection that found, and its views agreed on, only a few of the 68 landmarks
    failed; one whose views agree on most did not."""
    from reflame_core.landmarks.plausibility import detection_failed

    def failed(confidence: np.ndarray, placed: int = 68) -> str | None:
        face_idx = np.where(np.arange(68) < placed, np.arange(68), -1)
        return detection_failed(LandmarkSet(
            names=landmark_definitions().ibug_names, num_faces=100, face_idx=face_idx,
            bary=np.full((68, 3), 1 / 3), confidence=confidence))

    assert "only 9 of the 68" in failed(np.where(np.arange(68) < 9, 0.3, 0.02))
    assert "only 9 of the 68" in failed(np.ones(68), placed=9)  # all agreed on, too few
    assert failed(np.where(np.arange(68) < 40, 0.3, 0.02)) is None


def test_a_detection_whose_views_agree_weakly_is_doubted_not_failed():
    """Views that agree weakly on every landmark (a wrong face read the same way in each)
    make a detection doubtful; one agreed on as a face seen clearly is not."""
    from reflame_core.landmarks.plausibility import detection_doubtful, detection_failed

    def detection(confidence: np.ndarray) -> LandmarkSet:
        return LandmarkSet(names=landmark_definitions().ibug_names, num_faces=100,
                           face_idx=np.arange(68), bary=np.full((68, 3), 1 / 3),
                           confidence=confidence)

    weak = detection(np.full(68, 0.19))
    assert detection_failed(weak) is None  # all 68 placed and agreed on: not a failure
    assert "median confidence 0.19" in detection_doubtful(weak)
    assert detection_doubtful(detection(np.linspace(0.15, 0.6, 68))) is None  # median 0.375


def test_a_fit_to_a_doubtful_detection_warns_in_its_log_and_report(
        small_synthetic_head, tmp_path, capsys, monkeypatch):
    """A detection whose views agree weakly is still fitted to, and both the log and
    report.json say to check it."""
    from reflame_core.landmarks import detect
    from reflame_core.synthetic.head import write_synthetic_head

    head = small_synthetic_head
    scan = write_synthetic_head(head, tmp_path / "scan")

    def weakly_agreed(scan, **_kw) -> LandmarkSet:
        lms = head.true_landmark_set()
        lms.confidence[:] = 0.19
        return lms

    monkeypatch.setattr(detect, "detect_landmarks", weakly_agreed)
    code, _, err = run(capsys, "fit", scan, "--out", tmp_path / "fit", "--up", "+y",
                       "--front", "+z", *TINY)
    assert code == 0, err
    assert "landmarks: WARNING: the views agree only weakly" in err
    report = json.loads((tmp_path / "fit" / "report.json").read_text())
    assert any("agree only weakly" in w and "detected_landmarks.json" in w
               for w in report["warnings"])
    assert report["stages"]  # fitted to them all the same


def test_landmarks_command_backs_up_an_existing_file(sphere, tmp_path, capsys, monkeypatch):
    from reflame_core.landmarks import detect

    monkeypatch.setattr(detect, "detect_landmarks", lambda scan, **_kw: spread_landmarks(sphere))
    out = tmp_path / "lm.json"
    out.write_text("my corrected landmarks")
    code, stdout, err = run(capsys, "landmarks", sphere, "--out", out)
    assert code == 0, err
    assert "68 of 68" in stdout and "kept the existing" in err
    assert [p.read_text() for p in tmp_path.glob("lm.*.bak.json")] == ["my corrected landmarks"]
    assert json.loads(out.read_text())["format"] == "reflame-landmarks"


def test_folder_in_place_of_an_output_file_fails_before_fitting(sphere, tmp_path, capsys):
    lm = tmp_path / "lm.json"
    save_landmarks(lm, spread_landmarks(sphere))
    (tmp_path / "out" / "report.json").mkdir(parents=True)
    code, _, err = run(capsys, "fit", sphere, "--out", tmp_path / "out", "--landmarks", lm,
                       *TINY)
    assert_clear_error(code, err, "fit", "report.json", "is a folder where an output file goes")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json"]
