"""Screen-free tests of the GUI's panel state objects (no window, no Polyscope)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reflame_app import dialogs
from reflame_app.session_file import SessionData, load_session, save_session
from reflame_app.state.fit_control import FitControlState, stage_rows
from reflame_app.state.landmark_editor import LandmarkEditorState
from reflame_app.state.losses import LossPlotState
from reflame_app.state.messages import MessageLog
from reflame_app.state.params import format_value, parse_like
from reflame_app.state.views import ViewsPanelState
from reflame_core.errors import InputFileError, ScanError
from reflame_core.landmarks.definitions import landmark_definitions
from reflame_core.landmarks.landmark_set import UNPLACED, LandmarkSet


def _landmarks(num_faces: int = 100) -> LandmarkSet:
    names = landmark_definitions().ibug_names
    rng = np.random.default_rng(0)
    face = rng.integers(0, num_faces, len(names))
    face[5] = UNPLACED
    bary = rng.dirichlet(np.ones(3), len(names))
    return LandmarkSet(names=names, num_faces=num_faces, face_idx=face, bary=bary,
                       confidence=np.full(len(names), 0.8))


def test_views_layout_enable_and_look_through() -> None:
    v = ViewsPanelState()
    assert v.num_total == 40 and v.enabled.all()
    v.set_enabled(0, False)
    v.set_enabled(1, False)
    assert v.enabled.sum() == 38 and v.version == 2
    v.set_layout(num_views=20, elevations=[-20.0, 20.0])
    assert v.num_total == 40 and v.version == 3
    # Views nearest the disabled extreme azimuth stay disabled after the rebuild.
    assert not v.enabled[0] and v.enabled[10]
    v.set_layout(num_views=20, elevations=[-20.0, 20.0])  # no change, no new version
    assert v.version == 3
    eye, target, fov = v.look_through(10)
    assert v.selected == 10 and fov == pytest.approx(40.0)
    assert np.linalg.norm(eye) == pytest.approx(v.cameras.distance) and not target.any()
    with pytest.raises(ValueError):
        v.set_layout(num_views=0)
    with pytest.raises(IndexError):
        v.look_through(40)
    assert "az" in v.label(3)


def test_landmark_editor_pick_move_undo_redo_and_handoff() -> None:
    ed = LandmarkEditorState()
    ed.set_landmarks(_landmarks())
    assert ed.take_changes() is not None and ed.take_changes() is None
    rows = ed.rows()
    assert len(rows) == 68 and rows[36].group == "eyes" and not rows[5].placed
    assert not ed.apply_pick("scan", {"element_type": "face", "index": 3,
                                      "bary_coords": [1, 0, 0]}, "scan")  # not placing
    ed.select(5, place=True)
    pick = {"element_type": "face", "index": 42, "bary_coords": np.array([0.2, 0.3, 0.5])}
    assert not ed.apply_pick("other mesh", pick, "scan")
    assert ed.apply_pick("scan", pick, "scan")
    lms = ed.landmarks
    assert lms.face_idx[5] == 42 and lms.provenance[5] == "edited" and lms.enabled[5]
    assert np.allclose(lms.bary[5], [0.2, 0.3, 0.5]) and not ed.placing
    sent = ed.take_changes()
    assert sent is not None and sent is not lms and sent.face_idx[5] == 42
    ed.set_enabled(7, False)
    ed.set_group_weight("lips", 3.0)
    assert lms.weights[7] == 0 and lms.weights[50] == pytest.approx(3.0)
    ed.undo()
    ed.undo()
    assert lms.enabled[7] and lms.group_weights["lips"] == 1.0
    ed.redo()
    assert not lms.enabled[7]
    ed.reset(5)
    assert lms.face_idx[5] == UNPLACED and lms.provenance[5] == "detected"
    verts = np.random.default_rng(1).normal(size=(60, 3))
    faces = np.random.default_rng(2).integers(0, 60, (100, 3))
    shown = ed.scene_arrays(verts, faces)
    assert shown.positions.shape == (67, 3) and np.isfinite(shown.positions).all()
    assert not shown.edited.any() and not shown.outlier.any()
    assert np.allclose(shown.confidence, 0.8)
    ed.select(6)
    assert ed.placed_index() == 5


def test_params_parse_to_the_current_type() -> None:
    assert parse_like("0.5", 1.0) == 0.5 and isinstance(parse_like("2", 1.0), float)
    assert parse_like("300", 100) == 300
    assert parse_like("off", True) is False
    assert parse_like("[0.0, 20]", [0.0]) == [0.0, 20]
    assert parse_like(" +y ", "+z") == "+y"
    for bad, cur in (("abc", 1.0), ("1.5", 3), ("maybe", True), ("3", [1.0])):
        with pytest.raises(ValueError):
            parse_like(bad, cur)
    assert format_value(True) == "true" and format_value([1.0, 2]) == "[1.0, 2]"


def test_fit_control_edits_without_controller() -> None:
    fc = FitControlState()
    assert fc.state == "no fit" and not fc.can("start")
    fc.attach(None, {"coarse": {"lr": 0.03, "steps": 1000, "enabled": True}})
    assert fc.text[("coarse", "lr")] == "0.03"
    assert not fc.edit_param("coarse", "steps", "12.5")
    assert "whole number" in fc.param_error[("coarse", "steps")]
    assert fc.edit_param("coarse", "steps", "20")
    assert ("coarse", "steps") not in fc.param_error
    assert fc.overrides() == {"stages.coarse.steps": 20}
    with pytest.raises(RuntimeError):
        fc.command("start")
    rows = stage_rows([{"name": "coarse", "status": "running", "iteration": 5, "num_steps": 20}])
    assert rows[0].progress == pytest.approx(0.25)


def test_loss_plot_accumulates_and_resets() -> None:
    lp = LossPlotState()
    hist = [("coarse", i, {"mask": 1.0 / (i + 1), "depth": -0.0}) for i in range(5)]
    assert lp.update(hist) and not lp.update(hist)
    hist += [("refine", 0, {"mask": 0.1})]
    assert lp.update(hist)
    assert lp.stages == ["coarse", "refine"] and lp.terms("coarse") == ["mask", "depth"]
    term, x, y = lp.plot_data("coarse")[1]
    assert term == "depth" and (y > 0).all() and x.tolist() == [0, 1, 2, 3, 4]
    assert lp.latest("coarse")["mask"] == pytest.approx(0.2)
    assert lp.update(hist[:2]) and lp.stages == ["coarse"]  # restarted: rebuilt


def test_messages_guard_keeps_going() -> None:
    log = MessageLog()
    with log.guard("Opening scan"):
        raise ScanError("/x/head.obj", "no faces")
    with log.guard("Something"):
        raise KeyError("boom")
    assert log.errors[0].text == "Opening scan failed: /x/head.obj: no faces"
    assert "KeyError" in log.banner.text
    log.dismiss()
    assert log.banner is None


def test_session_file_roundtrip_and_errors(tmp_path) -> None:
    data = SessionData(scan_path="/s/head.obj", flame_dir="/f", overrides={"a.b": 1},
                       landmarks={"format": "x"}, fitted_vertices=np.ones((5, 3)))
    path = save_session(tmp_path / "sub" / "s.json", data)
    back = load_session(path)
    assert back.scan_path == "/s/head.obj" and back.overrides == {"a.b": 1}
    assert back.fitted_vertices.shape == (5, 3)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputFileError, match="bad.json"):
        load_session(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputFileError, match="not a ReFLAME session"):
        load_session(tmp_path / "other.json")


def test_native_dialogs_import_and_fall_back_without_display(monkeypatch) -> None:
    from imgui_bundle import portable_file_dialogs as pfd

    for cls in ("open_file", "save_file", "select_folder"):
        assert hasattr(getattr(pfd, cls), "result")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not dialogs.available()
    field = dialogs.PathField("folder", "FLAME folder")
    field.browse()
    assert not field.waiting and "type the path" in field.dialog_error
    field.text = "~/flame"
    field.submit_text()
    chosen = field.take()
    assert chosen is not None and chosen.name == "flame" and "~" not in str(chosen)
    assert field.take() is None


# ---- GUI fixes: picking, manual landmarks, export, fit state labels -----------------------

def _grid_mesh(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A flat n x n square grid in the z=0 plane, spanning [-1,1]^2."""
    xs = np.linspace(-1, 1, n)
    vx, vy = np.meshgrid(xs, xs)
    verts = np.stack([vx.ravel(), vy.ravel(), np.zeros(n * n)], 1)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a = r * n + c
            faces += [[a, a + 1, a + n + 1], [a, a + n + 1, a + n]]
    return verts, np.array(faces)


def test_ray_pick_hits_the_nearest_scan_face_behind_an_overlay() -> None:
    from reflame_app.state.picking import ClickGesture, pick_scan

    verts, faces = _grid_mesh()
    hit = pick_scan(verts, faces, np.array([0.3, -0.2, 5.0]), np.array([0.0, 0.0, -2.0]))
    assert hit is not None and hit.t == pytest.approx(5.0)
    assert np.allclose(hit.point, [0.3, -0.2, 0.0])
    tri = verts[faces[hit.face]]
    assert np.allclose(hit.bary @ tri, [0.3, -0.2, 0.0]) and hit.bary.sum() == pytest.approx(1)
    # Two layers: the nearer one (z=0.5) wins; a ray pointing away misses.
    both = np.concatenate([verts, verts + [0, 0, 0.5]])
    hit2 = pick_scan(both, np.concatenate([faces, faces + len(verts)]),
                     np.array([0.3, -0.2, 5.0]), np.array([0.0, 0.0, -1.0]))
    assert hit2.face >= len(faces) and hit2.t == pytest.approx(4.5)
    assert pick_scan(verts, faces, np.array([0.0, 0.0, 5.0]), np.array([0.0, 0.0, 1.0])) is None
    # Click = press and release at about the same place, not on a panel; a drag is no click.
    g = ClickGesture()
    assert g.update(True, False, (10, 10), False) is None
    assert g.update(False, True, (12, 11), False) == (12.0, 11.0)
    g.update(True, False, (10, 10), False)
    assert g.update(False, True, (60, 10), False) is None
    g.update(True, False, (10, 10), True)  # pressed over a panel
    assert g.update(False, True, (10, 10), False) is None


def test_selection_changes_the_scene_key_at_once() -> None:
    ed = LandmarkEditorState()
    ed.set_landmarks(_landmarks())
    key = ed.scene_key()
    ed.select(12)
    assert ed.scene_key() != key  # the 3D highlight follows the selection, no edit needed


def test_manual_placement_of_all_68_from_scratch() -> None:
    ed = LandmarkEditorState()
    ed.start_manual(100, "all")
    lms = ed.landmarks
    assert lms is not None and not lms.placed_mask.any() and ed.selected == 0 and ed.placing
    assert "contour" in ed.manual_hint() and "1 of 68" in ed.manual_hint()
    for k in range(3):
        assert ed.pick_face(10 + k, np.array([0.2, 0.3, 0.5]))
    assert ed.selected == 3 and ed.placing and lms.placed_mask[:3].all()
    assert "4 of 68" in ed.manual_hint()
    ed.skip_manual()
    assert ed.selected == 4 and not lms.placed_mask[3]
    for _ in range(64):
        ed.pick_face(1, np.array([1.0, 0.0, 0.0]))
    assert ed.manual is None and not ed.placing and lms.placed_mask.sum() == 67
    assert not ed.key_points_ready
    assert lms.provenance[0] == "edited" and lms.enabled[:3].all()


def test_five_key_points_initialise_the_rest(flame_template, landmark_embedding) -> None:
    from reflame_app.state.manual_landmarks import (
        KEY_POINTS,
        complete_key_points,
        diagram_points,
    )
    from reflame_core.geometry.similarity import Similarity
    from reflame_core.geometry.surface_query import MeshQuery
    from reflame_core.io.mesh import Scan

    t = flame_template
    # The "scan": the FLAME template moved by a similarity, so the truth is known.
    rot = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    sim = Similarity(2.0, rot, np.array([1.0, -3.0, 0.5]))
    verts = sim.apply(np.asarray(t.vertices, np.float64))
    truth = landmark_embedding.points(verts, t.faces)
    scan = Scan(vertices=verts, faces=np.asarray(t.faces))
    q = MeshQuery(verts, t.faces)
    ed = LandmarkEditorState()
    ed.start_manual(len(t.faces), "key5")
    assert ed.selected == KEY_POINTS[0] and "outer corner" in ed.manual_hint()
    for i in KEY_POINTS:
        h = q.closest(truth[i:i + 1])
        assert ed.selected == i
        ed.pick_face(int(h.face[0]), h.bary[0] / h.bary[0].sum())
    assert ed.key_points_ready and ed.manual is None
    assert ed.unedited_label == "detected"
    assert complete_key_points(ed, scan, t, landmark_embedding)
    assert ed.unedited_label == "estimated"  # the table says where the others come from
    lms = ed.landmarks
    assert lms.placed_mask[:68].all() and not ed.key_points_ready
    err = np.linalg.norm(lms.positions(verts, t.faces)[:68] - truth, axis=1)
    assert err.max() < 0.05 * 2.0  # exact up to the snap to the surface
    assert lms.provenance[30] == "edited" and lms.provenance[8] == "detected"
    assert lms.confidence[8] < lms.confidence[30]
    pts = diagram_points(t.vertices, t.faces, landmark_embedding)
    assert pts.shape == (68, 2) and pts.min() >= 0 and pts.max() <= 1
    assert pts[36, 0] < pts[45, 0] and pts[30, 1] < pts[8, 1]  # right eye left, chin low


def test_fit_state_finished_and_paused_stage_labels() -> None:
    from types import SimpleNamespace

    from reflame_app.state.fit_control import all_stages_done

    stages = [{"name": "rigid", "status": "done", "iteration": 1, "num_steps": 1},
              {"name": "coarse", "status": "running", "iteration": 4, "num_steps": 10}]
    ctl = SimpleNamespace(state="paused", snap=SimpleNamespace(stages=stages))
    ctl.latest_snapshot = lambda: ctl.snap
    fc = FitControlState()
    fc.attach(ctl, {})
    assert fc.state == "paused" and fc.can("resume") and fc.can("step")
    assert [r.status for r in stage_rows(stages, fc.state)] == ["done", "paused"]
    assert stage_rows(stages, "running")[1].status == "running"
    stages[1]["status"] = "skipped"
    assert all_stages_done(stages) and not all_stages_done([])
    assert fc.state == "finished"
    assert not fc.can("resume") and not fc.can("step") and not fc.can("start")
    assert not fc.can("skip") and fc.can("restart")
    ctl.state = "finished"  # the controller's own word for it
    assert fc.state == "finished" and not fc.can("resume")


def test_export_button_state_and_no_false_error(tmp_path) -> None:
    from types import SimpleNamespace

    from reflame_app.panels.file_panel import FilePanel, export_ready

    calls = []
    app = SimpleNamespace(controller=None, snapshot=None, export_pending=None,
                          messages=MessageLog(), export=lambda out: calls.append(out))
    assert not export_ready(app)[0] and "run a fit" in export_ready(app)[1]
    app.controller = object()
    assert not export_ready(app)[0]
    app.snapshot = object()
    assert export_ready(app) == (True, "")
    panel = FilePanel()
    panel.export.text = str(tmp_path / "out")
    panel.export.submit_text()
    panel.start_export(app)  # app.export returns None, as the real one does
    assert calls == [tmp_path / "out"] and not app.messages.errors
    app.export_pending = tmp_path / "out"
    assert not export_ready(app)[0]


def test_residual_limits_are_robust_and_symmetric() -> None:
    from reflame_app.state.residuals import coolwarm, residual_grid, robust_limits

    rng = np.random.default_rng(0)
    img = np.zeros((40, 40))
    img[10:30, 10:30] = rng.normal(0, 0.01, (20, 20))
    img[0, 0] = 50.0  # one outlier pixel
    lo, hi = robust_limits(img, signed=True)
    assert lo == -hi and 0.01 < hi < 0.05  # not set by the outlier, not by the zero border
    assert robust_limits(np.abs(img), signed=False)[0] == 0.0
    assert robust_limits(np.zeros(5), signed=True) == (-1.0, 1.0)
    assert np.allclose(coolwarm(np.array([0.0]), -1, 1), 1.0)  # zero residual is white
    grid, captions = residual_grid({"mask difference": img, "depth residual": -img,
                                    "landmarks": np.ones((40, 30, 3))})
    assert grid.shape == (40, 40 + 40 + 30 + 2 * 4, 3) and len(captions) == 3
    assert "±" in captions[0] and captions[2] == "landmarks"
    # Most of the head area shows a colour, not white: the range fits the data.
    tile = grid[10:30, 10:30]
    assert (np.abs(tile - 1.0).max(-1) > 0.1).mean() > 0.3


def test_scan_to_fit_distances() -> None:
    from reflame_app.state.residuals import scan_to_fit_distances

    verts, faces = _grid_mesh()
    pts = np.array([[0.0, 0.0, 0.25], [0.5, 0.5, -0.1]])
    assert np.allclose(scan_to_fit_distances(pts, verts, faces), [0.25, 0.1], atol=1e-5)


def test_dock_layout_and_framing_the_head_in_the_free_area() -> None:
    from reflame_app.state.views import DockLayout, frame_box

    lay = DockLayout(1280, 720)
    assert lay.dock_pos == (840, 0) and lay.dock_size == (440, 720)
    left, right = lay.free_x
    assert left == 310 and right == 840
    sx, sy = lay.side_window_pos(200)
    assert sx + lay.side_window_size[0] <= lay.dock_pos[0] and sy + 200 <= 720
    low, high = np.array([-1.0, -1.5, -1.0]), np.array([1.0, 1.5, 1.0])
    eye, target = frame_box(low, high, 45.0, 1280, 720, left, right)
    # Project the box corners with a pinhole camera looking along -z from eye.
    tan_v = np.tan(np.radians(22.5))
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                        for z in (low[2], high[2])])
    rel = corners - eye
    px = 640 + rel[:, 0] / -rel[:, 2] / (tan_v * 1280 / 720) * 640
    py = 360 - rel[:, 1] / -rel[:, 2] / tan_v * 360
    assert px.min() >= left and px.max() <= right and py.min() >= 0 and py.max() <= 720
    centre = (640 + (0 - eye[0]) / eye[2] / (tan_v * 1280 / 720) * 640)
    assert centre == pytest.approx((left + right) / 2, abs=1.0)
    assert target[2] == pytest.approx(0.0)


def test_loss_terms_as_checkboxes_with_fixed_colours() -> None:
    lp = LossPlotState()
    lp.update([("coarse", 0, {"mask": 1.0, "depth": 2.0}), ("refine", 0, {"landmark": 3.0,
                                                                          "mask": 0.5})])
    assert lp.all_terms == ["mask", "depth", "landmark"]
    assert lp.term_color("mask") != lp.term_color("depth")
    lp.show_term["mask"] = False
    assert [t for t, _, _ in lp.plot_data("coarse")] == ["depth"]
    assert [t for t, _, _ in lp.plot_data("refine")] == ["landmark"]


def test_first_run_lists_the_template_alternatives(tmp_path) -> None:
    from reflame_app.state.first_run import FirstRunState

    fr = FirstRunState()
    fr.check(tmp_path)
    needs = fr.needs()
    assert [n.what for n in needs] == ["FLAME template", "landmark embedding"]
    tmpl = needs[0]
    assert [[r.file for r in opt] for opt in tmpl.options] == [
        ["flame_template.npz"], ["flame2023.pkl", "head_template.obj"]]
    assert not tmpl.satisfied
    (tmp_path / "flame_template.npz").write_bytes(b"x")  # one alternative is enough
    fr.check(tmp_path)
    assert fr.needs()[0].satisfied and not fr.needs()[1].satisfied
    (tmp_path / "flame_template.npz").unlink()
    (tmp_path / "head_template.obj").write_bytes(b"x")  # half of the other one is not
    fr.check(tmp_path)
    assert not fr.needs()[0].satisfied


def test_landmarks_least_confident_first_filtered_and_focused() -> None:
    ed = LandmarkEditorState()
    lms = _landmarks()
    lms.confidence = np.linspace(0.9, 0.1, 68)  # landmark 67 is the least confident
    ed.set_landmarks(lms)
    assert [r.index for r in ed.rows()[:3]] == [0, 1, 2]
    ed.set_order("confidence")
    rows = ed.rows()
    assert [r.index for r in rows[:3]] == [67, 66, 65]
    assert rows[-1].index == 5 and not rows[-1].placed  # nothing to check: last
    ed.move(67, 3, np.array([1.0, 0.0, 0.0]))  # checked by the artist: after the detected ones
    assert ed.rows()[0].index == 66 and ed.rows()[-2].index == 67
    ed.max_confidence = 0.2
    listed = [r.index for r in ed.rows()]
    assert listed and all(lms.confidence[i] <= 0.2 for i in listed) and 67 not in listed
    with pytest.raises(ValueError):
        ed.set_order("by mood")
    key = ed.scene_key()
    ed.select(66, focus=True)
    assert ed.focus_request == 66 and ed.scene_key() != key
    ed.select(5, focus=True)  # unplaced: nowhere to look
    assert ed.focus_request == 66


def test_outliers_in_the_table_and_never_on_an_edited_landmark() -> None:
    from reflame_core.fit.landmark_outliers import LandmarkOutlier

    ed = LandmarkEditorState()
    ed.set_landmarks(_landmarks())
    key = ed.scene_key()
    ed.set_outliers([LandmarkOutlier(30, "nose_tip", 0.3, 0.02),
                     LandmarkOutlier(8, "chin", 0.2, 0.05)])
    assert ed.scene_key() != key  # the viewer redraws its rings
    assert [o.index for o in ed.outliers] == [30, 8]
    rows = {r.index: r for r in ed.rows()}
    assert rows[30].outlier_weight == pytest.approx(0.02) and rows[31].outlier_weight is None
    verts = np.random.default_rng(1).normal(size=(60, 3))
    faces = np.random.default_rng(2).integers(0, 60, (100, 3))
    shown = ed.scene_arrays(verts, faces)
    # rows among the placed landmarks (landmark 5 is unplaced): 30 -> 29, 8 -> 7
    assert np.flatnonzero(shown.outlier).tolist() == [7, 29]
    ed.move(30, 4, np.array([0.0, 1.0, 0.0]))  # the artist's point is trusted at once
    assert [o.index for o in ed.outliers] == [8] and ed.outlier_mask().sum() == 1


def test_confidence_colour_ramp_and_sizes() -> None:
    from reflame_app.state.confidence import confidence_colors, confidence_sizes

    c = confidence_colors([0.0, 0.6, 1.0, np.nan])
    assert c.shape == (4, 3) and (c >= 0).all() and (c <= 1).all()
    assert c[0, 0] > 0.9 and c[0, 1] < 0.2  # doubtful: red
    assert c[2, 1] > 0.7 and c[2, 0] < 0.3  # sure: green
    assert np.allclose(c[3], c[0])  # no confidence is no confidence
    s = confidence_sizes(np.linspace(0, 1, 11))
    assert s[0] == 1.0 and np.all(np.diff(s) < 0) and s[-1] == pytest.approx(0.3)


def test_frame_turns_flip_and_labels() -> None:
    from reflame_app.state.frame import (
        FRONT,
        UP,
        axis_name,
        frame_from_dict,
        frame_to_dict,
        front_flipped,
        quarter_turn,
        scan_direction,
        turned,
    )
    from reflame_core.geometry.frame import canonical_frame

    pts = np.random.default_rng(0).normal(size=(50, 3)) * [1.0, 2.0, 0.5]
    f0 = canonical_frame(pts, up="+z", front="-y")
    assert axis_name(scan_direction(f0, UP)) == "+z"
    assert axis_name(scan_direction(f0, FRONT)) == "-y"
    for axis in "xyz":
        r = quarter_turn(axis)
        assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)
        f = f0
        for _ in range(4):
            f = turned(f, axis)
        np.testing.assert_array_equal(f.rotation, f0.rotation)  # exactly: integer turns
        np.testing.assert_array_equal(f.translation, f0.translation)
    # right-handed quarter turns: about x, up goes to the front; about y, front goes to +x
    assert np.allclose(quarter_turn("x") @ UP, FRONT)
    assert np.allclose(quarter_turn("y") @ FRONT, [1.0, 0.0, 0.0])
    nod = turned(f0, "x")
    assert axis_name(scan_direction(nod, UP)) == "+y"  # the scan's old back is now up
    flipped = front_flipped(f0)
    assert axis_name(scan_direction(flipped, FRONT)) == "+y"
    assert axis_name(scan_direction(flipped, UP)) == "+z"
    np.testing.assert_array_equal(front_flipped(flipped).rotation, f0.rotation)
    # the scan's box centre stays at the canonical origin, its size unchanged
    moved = nod.apply(pts)
    assert np.allclose((moved.min(0) + moved.max(0)) / 2, 0.0, atol=1e-9)
    assert np.ptp(moved, 0).max() == pytest.approx(np.ptp(f0.apply(pts), 0).max())
    back, source = frame_from_dict(json.loads(json.dumps(frame_to_dict(nod, "corrected"))))
    assert source == "corrected" and np.allclose(back.matrix, nod.matrix)
    bad = frame_to_dict(nod, "corrected")
    bad["rotation"] = np.diag([1.0, 1.0, -1.0]).tolist()  # a mirror, not a rotation
    with pytest.raises(ValueError):
        frame_from_dict(bad)
    assert axis_name(np.array([0.6, 0.8, 0.0])) == "(0.60, 0.80, 0.00)"
    # the viewer's arrows leave the scan's box through its top and its face side
    from reflame_app.state.frame import frame_arrows

    drawn = nod.apply(pts)
    arrows = frame_arrows(drawn)
    assert arrows.up_base[1] == pytest.approx(drawn[:, 1].max()) and arrows.up[1] > 0
    assert arrows.front_base[2] == pytest.approx(drawn[:, 2].max()) and arrows.front[2] > 0
    assert not arrows.up[[0, 2]].any() and not arrows.front[:2].any()
    # a frame set on the head at the top of a tall stand: the arrows stay at the head
    head = np.random.default_rng(0).uniform(-1.5, 1.5, (500, 3))
    stand = np.c_[np.zeros(50), np.linspace(-1.6, -12.0, 50), np.full(50, 1.0)]
    arrows = frame_arrows(np.vstack([head, stand]))
    assert arrows.up_base[1] == pytest.approx(head[:, 1].max())
    assert -1.6 < arrows.front_base[1] < 1.5 and np.ptp(arrows.front) < 1.5


def test_focus_view_looks_at_the_landmark_from_outside() -> None:
    from reflame_app.state.views import focus_view

    centre = np.zeros(3)
    point = np.array([0.0, 0.0, 1.5])  # the nose tip
    nose_eye, target = focus_view(point, centre, 3.2, 45.0, 1000, 800, 0, 1000)
    assert np.allclose(target, point) and nose_eye[2] > point[2] and abs(nose_eye[0]) < 1e-9
    cheek = np.array([1.4, 0.0, 0.2])
    eye, target = focus_view(cheek, centre, 3.2, 45.0, 1000, 800, 0, 1000)
    assert eye[0] > cheek[0] and eye[2] > cheek[2]  # from the side, leaning to the front
    # a free area on the right: the landmark is shown there, not behind the panels
    eye2, target2 = focus_view(point, centre, 3.2, 45.0, 1000, 800, 400, 1000)
    assert target2[0] < point[0] and np.allclose(eye2 - target2, nose_eye - point)


def test_frame_correction_asks_reorients_reaches_the_fit_and_is_saved(
        small_synthetic_head, flame_dir, tmp_path, monkeypatch) -> None:
    from reflame_app.state.app_state import AppState
    from reflame_app.state.frame import front_flipped, turned
    from reflame_core.io.obj import write_obj

    monkeypatch.setenv("REFLAME_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    s = small_synthetic_head.scan
    path = write_obj(tmp_path / "head.obj", s.vertices, s.faces)
    app = AppState(flame_dir=flame_dir, preset="fast")
    try:
        app.config.set("cameras.num_views", 2)
        app.config.set("cameras.resolution", 48)
        app.open_scan(path)
        f0, version = app.to_canonical, app.scan_version
        assert app.frame.source == "axes" and app.frame.describe().startswith("up +y, front +z")
        for _ in range(4):  # nothing to lose yet: each turn applies at once
            assert app.turn_frame("x")
        assert np.array_equal(app.to_canonical.rotation, f0.rotation)
        assert app.scan_version == version + 4 and app.frame.source == "corrected"
        assert app.flip_front()
        assert np.allclose(app.scan_canonical.vertices, front_flipped(f0).apply(s.vertices),
                           atol=1e-5)  # what is drawn is the scan in the new frame
        assert app.flip_front()

        # Detected landmarks and a running fit: a change asks first, then says what it cost.
        app.editor.set_landmarks(small_synthetic_head.true_landmark_set())
        app.start_session()
        app.fit.command("step", 1)
        assert app.controller.wait_idle(120)
        app.poll()
        assert app.snapshot is not None
        assert np.allclose(app.snapshot.to_canonical.matrix, f0.matrix)
        assert not app.turn_frame("y")
        assert not app.turn_frame("y")  # clicks add up while the question is open
        costs = app.frame.pending.costs
        assert any("fit session" in c for c in costs)
        assert any("detect them again" in c for c in costs)
        assert np.array_equal(app.to_canonical.rotation, f0.rotation)  # not yet
        app.cancel_frame()
        assert app.frame.pending is None and app.controller is not None
        assert not app.flip_front()
        app.confirm_frame()
        half = front_flipped(f0)
        assert np.allclose(app.to_canonical.matrix, half.matrix)
        assert app.controller is None and app.snapshot is None  # the old fit is gone, as said
        assert app.editor.landmarks is not None and app.frame.landmarks_stale  # kept, flagged
        assert "front -z" in app.frame.describe()
        # The next fit runs in the corrected frame.
        app.start_session()
        app.fit.command("step", 1)
        assert app.controller.wait_idle(120)
        app.poll()
        assert np.allclose(app.snapshot.to_canonical.matrix, half.matrix)

        # Saved with the session, and back on load.
        assert app.turn_frame("z") is False
        app.confirm_frame()
        saved = app.save_session(tmp_path / "session.json")
        assert json.loads(saved.read_text())["frame"]["source"] == "corrected"
    finally:
        app.shutdown()
    other = AppState(flame_dir=flame_dir, preset="fast")
    try:
        other.load_session(saved)
        assert np.allclose(other.to_canonical.matrix, turned(half, "z").matrix)
        assert np.allclose(other.scan_canonical.vertices, turned(half, "z").apply(s.vertices),
                           atol=1e-5)
        doc = json.loads(saved.read_text())
        doc["frame"]["rotation"] = np.diag([1.0, -1.0, 1.0]).tolist()
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        with pytest.raises(InputFileError, match="frame"):
            other.load_session(tmp_path / "bad.json")
    finally:
        other.shutdown()


def test_a_failed_detection_is_shown_as_an_error_and_kept_for_the_artist(flame_dir) -> None:
    from reflame_app.state.app_state import AppState
    from reflame_core.worker.protocol import Result

    app = AppState(flame_dir=flame_dir, preset="fast")
    lms = _landmarks()
    lms.confidence[10:] = 0.0  # the views agreed on 9 of them only (landmark 5 is unplaced)
    app._apply_detection(Result(1, "detect", lms))
    banner = app.messages.banner
    assert banner.level == "error" and "only 9 of the 68" in banner.text
    assert app.editor.landmarks is not None  # the artist corrects them
    app._apply_detection(Result(2, "detect", _landmarks()))
    assert app.messages.banner.level == "info"
    nothing = _landmarks()
    nothing.face_idx[:] = -1
    app._apply_detection(Result(3, "detect", nothing))
    assert app.messages.banner.level == "error" and "no face" in app.messages.banner.text
    weak = _landmarks()
    weak.confidence[:] = 0.19  # every view found them, none agrees closely with the others
    app._apply_detection(Result(4, "detect", weak))
    assert app.messages.banner.level == "warning" and "weakly" in app.messages.banner.text


def test_an_export_whose_report_warns_says_so(flame_dir, tmp_path) -> None:
    """The report's warnings (a fit without landmarks, far from its scan) reach the artist as
    a warning banner, not a plain "exported"."""
    from types import SimpleNamespace

    from reflame_app.state.app_state import AppState
    from reflame_core.worker.protocol import Result

    app = AppState(flame_dir=flame_dir, preset="fast")
    reports = iter([{"warnings": ["fitted without landmarks, so the face may be misplaced"]},
                    {"warnings": []}])
    app.worker = SimpleNamespace(take_result=lambda kind: Result(1, kind, next(reports)))
    app.export_pending = tmp_path
    app._check_export()
    banner = app.messages.banner
    assert banner.level == "warning" and "without landmarks" in banner.text
    assert app.export_pending is None and not app.messages.errors
    app.export_pending = tmp_path
    app._check_export()
    assert app.messages.banner.level == "info"


def test_a_detection_on_a_stand_frames_the_head_as_reflame_fit_does(
        small_synthetic_head, flame_dir, tmp_path, monkeypatch) -> None:
    """A frame found from the face on a scan four head heights long: once the landmarks are
    detected, the studio centres and sizes it on the head they mark, its turn kept (the
    landmarks stay valid); a frame the user set stays as it is."""
    from reflame_app.state.app_state import AppState
    from reflame_core.geometry.frame import rotated_frame
    from reflame_core.io.obj import write_obj
    from reflame_core.synthetic.partial import on_a_stand
    from reflame_core.worker.protocol import Result

    monkeypatch.setenv("REFLAME_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    stood = on_a_stand(small_synthetic_head, 4.0)
    s = stood.scan
    rotation = small_synthetic_head.to_canonical.rotation
    app = AppState(flame_dir=flame_dir, preset="fast")
    try:
        app.config.set("frame.auto", False)  # the frame is given below, as if found
        app.open_scan(write_obj(tmp_path / "stood.obj", s.vertices, s.faces))
        for source in ("corrected", "auto"):
            assert app.set_frame(rotated_frame(s.vertices, rotation), source, confirmed=True)
            app._detect_frame = app.frame.version  # asked in this frame
            app._apply_detection(Result(1, "detect", stood.true_landmark_set()))
            head = app.to_canonical.apply(small_synthetic_head.scan.vertices.astype(np.float64))
            if source == "corrected":  # the user's frame: the head stays small in it
                assert np.ptp(head, axis=0).max() < 1.5
                assert "framed on the head" not in app.messages.banner.text
        assert 2.5 < np.ptp(head, axis=0).max() < 3.3
        assert np.allclose(app.to_canonical.rotation, rotation)
        assert app.frame.source == "auto" and not app.frame.landmarks_stale
        assert "framed on the head in the box its landmarks mark" in app.messages.banner.text
        assert np.allclose(app.scan_canonical.vertices, app.to_canonical.apply(s.vertices),
                           atol=1e-5)
    finally:
        app.shutdown()
