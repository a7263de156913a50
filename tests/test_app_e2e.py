"""End-to-end: the studio on Polyscope's mock backend (no screen), driven frame by frame."""

from __future__ import annotations

import json
import time

import numpy as np
import polyscope as ps
import pytest
from PIL import Image

from reflame_app.main import init_polyscope, make_studio
from reflame_app.scene import FIT, LMK_EDITED, SCAN
from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.io.obj import write_obj
from reflame_core.synthetic.head import make_synthetic_head


@pytest.fixture(scope="module")
def polyscope_mock():
    init_polyscope("openGL_mock")
    ps.set_frame_tick_limit_fps_mode("ignore_limits")
    yield
    ps.remove_all_structures()


def _frames_until(studio, cond, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting in the GUI loop"
        ps.frame_tick()
        time.sleep(0.005)
    ps.frame_tick()


def test_first_run_without_flame_files(polyscope_mock, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("REFLAME_FLAME_DIR", raising=False)
    studio = make_studio(None, None)
    for _ in range(3):
        ps.frame_tick()
    app = studio.app
    assert not app.assets_ready and not app.messages.errors
    assert app.first_run.rows and not any(r.present for r in app.first_run.rows)
    with app.messages.guard("Setting the FLAME folder"):
        app.set_flame_dir(tmp_path)
    assert "missing" in app.messages.errors[-1].text and not app.assets_ready


def test_open_detect_fit_pause_edit_step_export(polyscope_mock, tmp_path, flame_dir,
                                                data_dir, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("REFLAME_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    template = load_flame_template(flame_dir)
    emb = load_landmark_embedding(flame_dir)
    tex = np.asarray(Image.open(data_dir / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(template, tex, emb, seed=3, target_vertices=4000)
    s = head.scan
    scan_path = tmp_path / "head.obj"
    write_obj(scan_path, s.vertices, s.faces, uv=s.uv, uv_faces=s.uv_faces, texture=s.texture)

    studio = make_studio(scan_path, flame_dir, preset="fast")
    studio.paced = False  # frames as fast as the test ticks them
    app = studio.app
    app.views.set_layout(num_views=6, resolution=96)
    ps.frame_tick()
    assert app.assets_ready and app.scan is not None, [m.text for m in app.messages.items]
    assert ps.has_surface_mesh(SCAN)

    app.detect_landmarks(wait=False)  # as the button does: off the GUI thread
    assert app.detecting
    _frames_until(studio, lambda: not app.detecting and app.editor.landmarks is not None)
    assert app.editor.landmarks.placed_mask.sum() >= 60, [m.text for m in app.messages.items]
    app.start_session()
    app.fit.command("step", 3)
    _frames_until(studio, lambda: app.fit.state == "paused" and app.snapshot.version >= 3)
    assert ps.has_surface_mesh(FIT)
    assert app.losses.stages and app.snapshot.history

    # Move a landmark by "clicking" the scan, while paused.
    if app.editor.landmarks is None:  # ground-truth landmarks of the synthetic head instead
        app.editor.set_landmarks(head.true_landmark_set())
    app.editor.select(30, place=True)
    pick = {"element_type": "face", "index": 7, "bary_coords": np.array([0.2, 0.3, 0.5])}
    assert studio.app.editor.apply_pick(SCAN, pick, SCAN)
    version = app.snapshot.version
    app.fit.command("step", 2)
    _frames_until(studio, lambda: app.fit.state == "paused" and app.snapshot.version >= version + 2)
    assert app.editor.landmarks.provenance[30] == "edited"
    assert ps.has_point_cloud(LMK_EDITED)

    app.fit.edit_param("coarse", "lr", "0.02")
    out = tmp_path / "export"
    app.export(out)
    _frames_until(studio, lambda: app.export_pending is None)
    assert not [m for m in app.messages.errors if "Detecting" not in m.text], app.messages.errors
    for name in ("fit.obj", "report.json", "losses.csv", "scan_landmarks.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]
    saved = app.save_session(tmp_path / "session.json")
    doc = json.loads(saved.read_text())
    assert doc["overrides"] == {"stages.coarse.lr": 0.02}
    assert np.asarray(doc["fitted_vertices"]).shape == (5023, 3)
    app.shutdown()
    assert (tmp_path / "autosave" / "last_session.json").is_file()


def test_scene_pick_through_overlay_extents_frusta_and_highlight(polyscope_mock, tmp_path,
                                                                 flame_dir, small_synthetic_head,
                                                                 monkeypatch) -> None:
    from reflame_app.scene import LMK_SELECTED, view_name
    from reflame_app.state.picking import pick_scan

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("REFLAME_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    s = small_synthetic_head.scan
    scan_path = tmp_path / "head.obj"
    write_obj(scan_path, s.vertices, s.faces)
    studio = make_studio(scan_path, flame_dir, preset="fast")
    app = studio.app
    app.views.set_layout(num_views=6, resolution=96)
    ps.frame_tick()
    scan = app.scan_canonical
    # Scene extents are the scan's box, not inflated by the orbit frusta (hidden by default).
    low, high = ps.get_bounding_box()
    assert np.allclose(low, scan.vertices.min(0), atol=1e-4)
    assert np.allclose(high, scan.vertices.max(0), atol=1e-4)
    assert not studio.scene.style.show_cameras
    # The FLAME overlay sits in front of the scan: the pick still lands on the scan.
    app.loaded_vertices = app.template.vertices * 1.05
    ps.frame_tick()
    assert ps.has_surface_mesh(FIT)
    centre = scan.vertices.mean(0)
    ps.look_at(centre + np.array([0.0, 0.0, 10.0]), centre)
    w, h = ps.get_window_size()
    origin = ps.get_view_camera_parameters().get_position()
    ray = ps.screen_coords_to_world_ray((w / 2, h / 2))
    hit = pick_scan(scan.vertices, scan.faces, origin, ray)
    assert hit is not None and hit.point[2] > centre[2]  # the front of the face
    app.editor.start_manual(len(scan.faces), "all")
    ps.frame_tick()
    assert ps.has_point_cloud(LMK_SELECTED) is False  # nothing placed yet
    assert app.editor.pick_face(hit.face, hit.bary)
    ps.frame_tick()
    app.editor.select(0)  # selecting alone (no edit) highlights at once
    ps.frame_tick()
    assert ps.has_point_cloud(LMK_SELECTED)
    # Looking through a view is instant and hides that view's frustum only.
    studio.scene.style.show_cameras = True
    studio.views_panel.look_through(app, 2, studio.scene)
    ps.frame_tick()
    assert not ps.get_camera_view(view_name(2)).is_enabled()
    assert ps.get_camera_view(view_name(1)).is_enabled()
    eye = app.views.cameras.camera_positions()[2]
    assert np.allclose(ps.get_view_camera_parameters().get_position(), eye, atol=1e-3)
    assert np.allclose(ps.get_bounding_box()[1], high, atol=1e-4)
    app.shutdown()
