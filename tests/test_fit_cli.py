"""``reflame fit`` end to end on a synthetic scan written to disk, and its error messages."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from reflame_core.cli import main
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.scan import load_scan
from reflame_core.landmarks.definitions import landmark_definitions
from reflame_core.landmarks.landmark_json import load_landmarks, save_landmarks
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.synthetic.head import write_synthetic_head

SMALL = [
    "--set",
    "cameras.num_views=4",
    "--set",
    "cameras.resolution=64",
    "--set",
    "stages.coarse.steps=30",
    "--set",
    "stages.refine.steps=10",
    "--set",
    "stages.coarse.surface_samples=3000",
    "--set",
    "stages.refine.surface_samples=3000",
    "--set",
    "stages.texture.enabled=false",
]


@pytest.fixture(scope="module")
def scan_on_disk(small_synthetic_head, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    obj = write_synthetic_head(small_synthetic_head, folder)
    scan = load_scan(obj)
    hits = MeshQuery(scan.vertices, scan.faces).closest(small_synthetic_head.true_landmarks)
    lms = LandmarkSet(
        names=landmark_definitions().ibug_names,
        num_faces=len(scan.faces),
        face_idx=hits.face,
        bary=hits.bary / hits.bary.sum(1, keepdims=True),
        confidence=np.ones(68),
    )
    save_landmarks(folder / "landmarks.json", lms)
    return obj, folder / "landmarks.json"


def test_fit_writes_every_output(scan_on_disk, flame_dir, tmp_path, small_synthetic_head, capsys):
    obj, lm = scan_on_disk
    out = tmp_path / "out"
    code = main(
        [
            "fit",
            str(obj),
            "--out",
            str(out),
            "--flame-dir",
            str(flame_dir),
            "--landmarks",
            str(lm),
            "--preset",
            "fast",
            "--device",
            "cpu",
            "--quiet",
            *SMALL,
        ]
    )
    assert code == 0
    for name in (
        "fit.obj",
        "fit_canonical.obj",
        "landmarks.json",
        "losses.csv",
        "config.toml",
        "transform.json",
        "report.json",
    ):
        assert (out / name).is_file(), name
    fit = load_scan(out / "fit.obj")
    assert fit.vertices.shape == (5023, 3) and fit.uv is not None
    # Written in the scan's own frame and units: close to the truth there.
    height = np.ptp(small_synthetic_head.true_vertices, axis=0).max()
    err = np.linalg.norm(fit.vertices - small_synthetic_head.true_vertices, axis=1).mean()
    assert err / height < 0.03
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]["coarse"]["iterations"] == 30
    assert report["stages"]["affine"]["iterations"] == 8
    assert report["stages"]["lattice"]["iterations"] == 10
    assert report["distances_relative_to_scan_size"]["fit_to_scan_mean"] < 0.02
    assert report["warnings"] == []
    with open(out / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    # rigid, affine (preset fast), jaw, lattice, coarse, refine, eyes
    assert len(rows) == 1 + 8 + 1 + 10 + 30 + 10 + 1
    assert "steps = 30" in (out / "config.toml").read_text()
    assert "wrote" in capsys.readouterr().out


def test_fit_without_landmarks_detects_them_and_saves_them(
    scan_on_disk, flame_dir, tmp_path, small_synthetic_head, capsys
):
    out = tmp_path / "out"
    args = ["fit", str(scan_on_disk[0]), "--out", str(out), "--flame-dir", str(flame_dir),
            "--preset", "fast", "--device", "cpu", "--quiet", *SMALL]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "landmarks: detected 70 of 70" in err and "detected_landmarks.json" in err
    scan = load_scan(scan_on_disk[0])
    lms = load_landmarks(out / "detected_landmarks.json", num_faces=len(scan.faces))
    height = np.ptp(small_synthetic_head.true_vertices, axis=0).max()
    lm_err = np.linalg.norm(lms.positions(scan.vertices, scan.faces)[:68]
                            - small_synthetic_head.true_landmarks, axis=1) / height
    assert np.mean(lm_err < 0.02) >= 0.9
    # The fit used them: its targets are the detected points.
    doc = json.loads((out / "landmarks.json").read_text())
    np.testing.assert_allclose(doc["targets"]["points"],
                               lms.positions(scan.vertices, scan.faces)[:68], atol=1e-4)
    fit = load_scan(out / "fit.obj")
    assert np.linalg.norm(fit.vertices - small_synthetic_head.true_vertices, axis=1).mean() \
        / height < 0.03


def test_missing_flame_files_say_where_to_get_them(scan_on_disk, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REFLAME_FLAME_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    empty = tmp_path / "nothing"
    empty.mkdir()
    code = main(
        ["fit", str(scan_on_disk[0]), "--out", str(tmp_path / "o"), "--flame-dir", str(empty)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "flame.is.tue.mpg.de" in err and "landmark_embedding.npy" in err
    assert "Traceback" not in err


def test_bad_scan_and_bad_config_name_the_file(flame_dir, tmp_path, capsys):
    bad = tmp_path / "broken.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\n")
    assert (
        main(
            [
                "fit",
                str(bad),
                "--out",
                str(tmp_path / "o"),
                "--flame-dir",
                str(flame_dir),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "broken.obj" in capsys.readouterr().err
    cfg = tmp_path / "my.toml"
    cfg.write_text("[stages.coarse]\nstepz = 3\n")
    assert main(["fit", str(bad), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "my.toml" in err and "stepz" in err


def test_a_diverging_fit_writes_its_last_finite_state_and_exits_3(
        scan_on_disk, flame_dir, tmp_path, capsys, monkeypatch):
    from reflame_core.fit.stages import deform

    original = deform.evaluate_terms

    def poisoned(*args):
        terms = original(*args)
        terms["depth"] = terms["depth"] * float("nan")
        return terms

    monkeypatch.setattr(deform, "evaluate_terms", poisoned)
    obj, lm = scan_on_disk
    out = tmp_path / "out"
    code = main(["fit", str(obj), "--out", str(out), "--flame-dir", str(flame_dir),
                 "--landmarks", str(lm), "--preset", "fast", "--device", "cpu", "--quiet",
                 *SMALL])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    assert "non-finite" in err and "last finite step" in err
    report = json.loads((out / "report.json").read_text())
    assert any(e.startswith("stopped:") for e in report["events"])
    assert report["stages"]["coarse"]["status"] != "done"
    assert (out / "fit.obj").stat().st_size > 0


def test_a_fit_far_from_its_scan_is_warned_about(flame_dir, tmp_path, capsys):
    """A scan that is no head (a flat square): the fit runs, and says it did not find one."""
    obj = tmp_path / "square.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3\nf 1 3 4\n")
    out = tmp_path / "out"
    code = main(["fit", str(obj), "--out", str(out), "--flame-dir", str(flame_dir),
                 "--preset", "fast", "--device", "cpu", "--quiet", "--up", "+y",
                 "--front", "+z", *SMALL])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    # No face on it either: both are said.
    first, far = report["warnings"]
    assert first.startswith("fitted without landmarks") and "far from the scan" in far
    assert "WARNING: the fit lies far from the scan" in capsys.readouterr().err
