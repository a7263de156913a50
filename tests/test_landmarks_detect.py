"""Offline detector (MediaPipe) + lifting on a realistic synthetic head, against FLAME truth."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.io.obj import write_obj
from reflame_core.landmarks.cli import add_parser
from reflame_core.landmarks.detect import detect_landmarks
from reflame_core.landmarks.landmark_json import load_landmarks
from reflame_core.synthetic.head import SMALL_TARGET_VERTICES, make_synthetic_head


@pytest.fixture(scope="module")
def head(flame_dir, data_dir):
    tpl, emb = load_flame_template(flame_dir), load_landmark_embedding(flame_dir)
    tex = cv2.cvtColor(cv2.imread(str(data_dir / "textures" / "facescape_texmap.jpg")),
                       cv2.COLOR_BGR2RGB)
    h = make_synthetic_head(tpl, tex, emb, seed=3, target_vertices=SMALL_TARGET_VERTICES)
    return h


def _errors(h, lms) -> np.ndarray:
    """(68,) distance to truth / head height."""
    height = np.ptp(h.to_canonical.apply(h.true_vertices)[:, 1]) / h.to_canonical.scale
    pos = lms.positions(h.scan.vertices, h.scan.faces)[:68]
    return np.linalg.norm(pos - h.true_landmarks, axis=1) / height


def test_mediapipe_landmarks_on_synthetic_head(head):
    lms = detect_landmarks(head.scan, backend="mediapipe")
    assert lms.placed_mask[:68].all()
    assert {"eye_right_centre", "eye_left_centre"} <= set(lms.names)
    err = _errors(head, lms)
    # The target: >= 90% of the 68 within 2% of head height (measured on this head:
    # 97%; on 20k-vertex heads, seeds 1-10: see RESULTS.md). Brows, nose, eyes, lips: all.
    assert np.mean(err < 0.02) >= 0.90, np.round(err, 3)
    assert np.all(err[17:] < 0.02), np.round(err, 3)
    assert np.median(err) < 0.0075
    # Views agree less on the jaw line than on the inner face, and confidence says so.
    conf = lms.confidence[:68]
    assert conf.min() > 0 and conf.max() <= 1 and conf[17:].mean() > conf[:17].mean()


def _landmarks_command(head, folder, *flags: str) -> argparse.Namespace:
    """``reflame landmarks`` on ``head``'s textured scan written into ``folder``, writing
    ``folder/lms.json``."""
    scan_path = folder / "head.obj"
    write_obj(scan_path, head.scan.vertices, head.scan.faces, uv=head.scan.uv,
              uv_faces=head.scan.uv_faces, texture=head.scan.texture)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["landmarks", str(scan_path), "--out", str(folder / "lms.json"),
                              *flags])


def test_cli_writes_landmark_json(head, tmp_path):
    args = _landmarks_command(head, tmp_path, "--detector", "mediapipe", "--no-refine")
    out = tmp_path / "lms.json"
    assert args.handler(args) == 0
    lms = load_landmarks(out, num_faces=len(head.scan.faces))
    assert lms.placed_mask[:68].sum() >= 60


def test_cli_refine_without_flame_says_so_before_detecting(head, tmp_path, monkeypatch):
    import reflame_core.landmarks.cli as cli
    from reflame_core.errors import AssetError

    monkeypatch.setattr(cli, "get_detector", lambda *a, **k: pytest.fail("detected first"))
    args = _landmarks_command(head, tmp_path, "--refine", "--flame-dir",
                              str(tmp_path / "no_flame_here"))
    with pytest.raises(AssetError, match="no_flame_here"):
        args.handler(args)
    assert not (tmp_path / "lms.json").exists()


def test_cli_without_flame_writes_the_detections_and_says_so(head, tmp_path, monkeypatch,
                                                             capsys):
    import reflame_core.fit.setup as setup
    from reflame_core.errors import AssetError

    def no_flame(_folder=None):
        raise AssetError("no FLAME folder is set up.\n\nhow to get one ...")

    monkeypatch.setattr(setup, "load_flame", no_flame)
    args = _landmarks_command(head, tmp_path, "--detector", "mediapipe")
    out = tmp_path / "lms.json"
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    assert "detection only, not refined by a FLAME fit (no FLAME folder is set up.)" \
        in captured.err
    assert "refined" not in captured.out
    assert load_landmarks(out, num_faces=len(head.scan.faces)).placed_mask[:68].sum() >= 60


def test_detection_renders_sample_a_photogrammetry_texture_scaled_down_once():
    """An 8-16K texture is scaled to at most 2048 a side for the detection renders (16K² as
    float32 was 3 GB): aspect and colour kept, done once for the many renders of one scan;
    a texture that fits is used as it is."""
    from reflame_core.landmarks.detect import DETECTION_TEXTURE_SIDE, detection_texture

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (3000, 5000, 3), np.uint8)
    small = detection_texture(big)
    assert max(small.shape[:2]) == DETECTION_TEXTURE_SIDE
    assert abs(small.shape[1] / small.shape[0] - 5 / 3) < 0.01
    assert np.abs(small.reshape(-1, 3).mean(0) - big.reshape(-1, 3).mean(0)).max() < 0.5
    assert detection_texture(big) is small
    fits = big[:1024, :1024]
    assert detection_texture(fits) is fits


def test_detection_renders_fill_a_hole_with_the_surface_around_it(monkeypatch):
    """A grey-shaded sphere with a hole facing the camera: the hole shows the inside of the
    far side, seen from behind. The detection render paints it over like its surroundings.
    The inside seen through a wide cut that borders the background, and faces wound inward
    (every face from behind), are left as drawn."""
    import trimesh

    from reflame_core.io.mesh import Scan
    from reflame_core.landmarks import detect
    from reflame_core.landmarks.detect import render_for_detection
    from reflame_core.landmarks.render_look import fill_holes
    from reflame_core.render.cameras import OrbitCameras

    ball = trimesh.creation.icosphere(4)
    v = ball.vertices.astype(np.float32)
    keep = ~(v[ball.faces].mean(1) @ [0, 0, 1] > 0.93)  # a hole about 40° wide, facing +z
    holed = Scan(vertices=v, faces=ball.faces[keep])
    cameras = OrbitCameras(num_views=1, azimuth_range=0.0, resolution=128)
    images, out = render_for_detection(holed, cameras)
    hole = np.zeros((128, 128), bool)
    hole[58:70, 58:70] = True  # the hole's middle
    ring = np.zeros((128, 128), bool)
    ring[40:88, 40:88] = True
    ring[50:78, 50:78] = False  # the sphere's surface around the hole
    seen = images[0].astype(float).mean(-1)
    assert abs(seen[hole].mean() - seen[ring].mean()) < 25, (seen[hole].mean(), seen[ring].mean())
    assert (images[0][~out.mask[0, ..., 0].cpu().numpy().astype(bool)] == 0).all()

    # Cut open at the bottom and seen from below: the inside shows through the cut, which
    # borders the background. The scan ends there; it is drawn as it is.
    cut = ball.faces[~(v[ball.faces].mean(1)[:, 1] < -0.7)]
    below = OrbitCameras(num_views=1, azimuth_range=0.0, elevations=(-25.0,), resolution=128)
    with monkeypatch.context() as m:
        m.setattr(detect, "fill_holes", lambda im, *_a: im)
        drawn, out_below = render_for_detection(Scan(vertices=v, faces=cut), below)
    tri = out_below.tri_id[0].cpu().numpy()
    corners = v[cut[tri[tri >= 0]]]
    inside = np.einsum("kd,kd->k", np.cross(corners[:, 1] - corners[:, 0],
                                            corners[:, 2] - corners[:, 0]),
                       below.camera_positions()[0] - corners.mean(1)) < 0
    assert inside.sum() > 500  # the inside does show
    np.testing.assert_array_equal(
        fill_holes(drawn, tri[None], v, cut, below.camera_positions()), drawn)
    # Wound inward, nearly every covered pixel shows a face from behind: not holes.
    inward = ball.faces[keep][:, ::-1]
    np.testing.assert_array_equal(
        fill_holes(images, out.tri_id.cpu().numpy(), v, inward, cameras.camera_positions()),
        images)


def test_mouth_open_reads_the_inner_lips_gap_against_the_eyes() -> None:
    from reflame_core.landmarks.mediapipe_detector import (
        EYE_OUTER_CORNERS,
        INNER_LIP_MIDDLES,
        NUM_POINTS,
        OPEN_MOUTH,
        MediaPipeDetector,
    )

    points = np.zeros((NUM_POINTS, 3))
    points[EYE_OUTER_CORNERS[1]] = [1.0, 0.0, 0.0]
    points[INNER_LIP_MIDDLES[1]] = [0.0, -0.5 * OPEN_MOUTH, 0.0]
    assert not MediaPipeDetector.mouth_open(points)
    points[INNER_LIP_MIDDLES[1]] = [0.0, -2 * OPEN_MOUTH, 0.0]
    assert MediaPipeDetector.mouth_open(points)
    points[INNER_LIP_MIDDLES[0]] = np.nan  # not placed: read as closed
    assert not MediaPipeDetector.mouth_open(points)


def test_index_table_takes_rows_of_another() -> None:
    from reflame_core.landmarks.definitions import IndexTable

    names = ("a", "b", "c")
    main = IndexTable(np.eye(3), names)
    other = IndexTable(np.full((3, 3), 1 / 3), names)
    mixed = main.with_rows(other, slice(1, 3))
    np.testing.assert_array_equal(mixed.matrix[0], main.matrix[0])
    np.testing.assert_array_equal(mixed.matrix[1:], other.matrix[1:])
    with pytest.raises(ValueError, match="different"):
        main.with_rows(IndexTable(np.eye(3), ("a", "b", "x")), slice(0, 1))


def test_two_detections_combine_by_confidence_on_the_surface():
    """Where both detections placed a landmark: the confidence-weighted mean of their
    points, snapped onto the surface; where one did: its point; where neither view set
    agreed at all: the plain mean."""
    import trimesh

    from reflame_core.geometry.surface_query import MeshQuery
    from reflame_core.landmarks.detect import combine_detections
    from reflame_core.landmarks.lifting import FusedLandmarks

    sphere = trimesh.creation.icosphere(subdivisions=4)
    query = MeshQuery(np.asarray(sphere.vertices), np.asarray(sphere.faces))
    pa = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pb = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0]])

    def fused(points, placed, confidence):
        snap = query.closest(points)
        face = np.where(placed, snap.face, -1)
        return FusedLandmarks(face, snap.bary, np.where(placed[:, None], snap.points, np.nan),
                              np.asarray(confidence, float), np.where(placed, 3, 0))

    a = fused(pa, np.array([True, True, True]), [0.75, 0.6, 0.0])
    b = fused(pb, np.array([True, False, True]), [0.25, 0.0, 0.0])
    out = combine_detections(a, b, query)
    mixed = 0.75 * a.points[0] + 0.25 * b.points[0]
    np.testing.assert_allclose(out.points[0], mixed / np.linalg.norm(mixed), atol=0.02)
    assert out.confidence[0] == pytest.approx(0.75 * 0.75 + 0.25 * 0.25)
    np.testing.assert_allclose(out.points[1], a.points[1])  # only one placed it
    assert out.face[1] == a.face[1] and out.confidence[1] == 0.6
    assert out.face[2] >= 0 and np.isfinite(out.points[2]).all()  # plain mean, on the surface
    np.testing.assert_allclose(np.linalg.norm(out.points), np.sqrt(3), atol=0.02)
