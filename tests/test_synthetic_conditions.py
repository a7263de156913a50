"""Benchmark-world conditions keep the truth exact: on the surface, mapped back to the deformed
template, masked where cut away; appearance changes only the texture."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from reflame_core.fit import jaw
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.scan import load_scan
from reflame_core.synthetic import appearance, conditions, expression, partial
from reflame_core.synthetic.head import write_synthetic_head
from reflame_core.synthetic.scoring import NOT_PLACED, landmark_errors, summarize_landmarks
from reflame_core.synthetic.truth import head_height
from reflame_core.synthetic.world import CONDITIONS, SCENARIOS, apply_scenario

SEED = 7


@pytest.fixture(scope="module")
def base(small_synthetic_head):
    return small_synthetic_head


@pytest.fixture(scope="module")
def heads(base):
    """Every single-condition scenario and the mix, built once."""
    return {name: apply_scenario(base, SCENARIOS[name], SEED)
            for name in (*CONDITIONS, "wild_mix")}


def _surface_distance(head, points: np.ndarray) -> np.ndarray:
    """Distances (N,) of points to the scan surface, relative to the head height."""
    q = MeshQuery(head.scan.vertices, head.scan.faces, centroids=64)
    return q.closest(points).distance / head_height(head)


@pytest.mark.parametrize("name", [*CONDITIONS, "wild_mix"])
def test_truth_on_surface_and_back_to_template(heads, name) -> None:
    head = heads[name]
    # Noise makes slivers where the float32 distance query itself errs by ~1e-5.
    tol = 1e-5 if name not in ("noise", "wild_mix") else 3e-5
    assert _surface_distance(head, head.true_vertices[head.vertex_present]).max() < tol
    present_lm = head.true_landmarks[head.landmark_present]
    assert present_lm.size and _surface_distance(head, present_lm).max() < tol
    # to_canonical carries the truth onto the deformed template, as for the plain generator.
    height = np.ptp(head.deformed_vertices[:, 1])
    err = np.linalg.norm(head.to_canonical.apply(head.true_vertices) - head.deformed_vertices,
                         axis=1) / height
    assert np.median(err) < 2e-3 and err.max() < 0.03


def test_conditions_are_seeded(base, heads) -> None:
    again = apply_scenario(base, ("holes", "hue_saturation"), SEED)
    np.testing.assert_array_equal(again.scan.faces, heads["holes"].scan.faces)
    np.testing.assert_array_equal(again.scan.texture, heads["hue_saturation"].scan.texture)
    other = apply_scenario(base, SCENARIOS["shape"], SEED + 1)
    assert not np.allclose(other.scan.vertices, heads["shape"].scan.vertices)


def test_proportions_and_shape_change_the_head(base, heads) -> None:
    ext = np.ptp(base.deformed_vertices, axis=0)
    ratio = np.ptp(heads["proportions"].deformed_vertices, axis=0) / ext
    assert np.all(np.abs(ratio - 1) <= conditions.MAX_PROPORTION + 1e-9)
    assert np.abs(ratio - 1).max() > 0.01
    moved = np.linalg.norm(heads["shape"].deformed_vertices - base.deformed_vertices, axis=1)
    lo, hi = conditions.SHAPE_MAX_DISPLACEMENT
    assert lo - 1e-3 < moved.max() / np.ptp(base.deformed_vertices[:, 1]) < hi + 1e-3


def test_rotation_replaces_the_pose(base, heads) -> None:
    rel = heads["rotation"].to_canonical.rotation
    angle = np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))
    assert conditions.ROTATION_DEG[0] - 1e-6 <= angle <= conditions.ROTATION_DEG[1] + 1e-6
    assert heads["rotation"].to_canonical.scale == pytest.approx(base.to_canonical.scale)


@pytest.mark.parametrize("factor", [0.01, 1000.0])
def test_units_scale_coordinates_not_relative_errors(base, factor) -> None:
    scaled = conditions.scale_units(base, factor)
    np.testing.assert_allclose(scaled.scan.vertices, base.scan.vertices * factor,
                               rtol=1e-5, atol=1e-6 * factor)
    assert head_height(scaled) == pytest.approx(head_height(base) * factor, rel=1e-6)
    offset = np.array([0.01, 0.0, 0.0]) * head_height(base)  # every landmark 1% off
    e_base = landmark_errors(base, base.true_landmarks + offset)
    e_scaled = landmark_errors(scaled, scaled.true_landmarks + offset * factor)
    np.testing.assert_allclose(e_scaled, e_base, rtol=1e-4)


def test_appearance_changes_texture_only(base, heads) -> None:
    for name in ("brightness", "contrast", "hue_saturation", "lighting", "grayscale", "low_res"):
        head = heads[name]
        np.testing.assert_array_equal(head.scan.vertices, base.scan.vertices)
        assert head.scan.texture.shape == base.scan.texture.shape
        assert head.texture_truth is head.scan.texture
        assert np.abs(head.scan.texture.astype(int) - base.scan.texture).mean() > 2, name
    gray = heads["grayscale"].scan.texture
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_lighting_darkens_surfaces_facing_away(base) -> None:
    lit = appearance.bake_lighting(base, np.array([0.0, 0.0, 1.0]), ambient=0.1)
    n = appearance.texel_normals(base, 64)
    ratio = lit.scan.texture.astype(float).sum(2) / np.maximum(
        base.scan.texture.astype(float).sum(2), 1)
    small = ratio[:: ratio.shape[0] // 64, :: ratio.shape[1] // 64][:64, :64]
    facing, away = n[..., 2] > 0.9, n[..., 2] < -0.5
    assert np.median(small[facing]) > 0.8 and np.median(small[away]) < 0.2


def test_no_texture_has_no_colour(heads) -> None:
    scan = heads["no_texture"].scan
    assert not scan.has_texture
    assert scan.texture is None and scan.uv is None and scan.vertex_colors is None


@pytest.mark.parametrize("name", ["cut_neck", "no_back", "holes"])
def test_cuts_remove_geometry_and_mask_truth(base, heads, name) -> None:
    head = heads[name]
    assert len(head.scan.faces) < len(base.scan.faces)
    assert not head.vertex_present.all()
    # What is masked is really gone: far from what is left of the surface.
    gone = _surface_distance(head, head.true_vertices[~head.vertex_present])
    assert gone.min() > 5e-6
    # Truth positions themselves do not move: the mask says where, not the points.
    np.testing.assert_array_equal(head.true_vertices, base.true_vertices)


def test_cut_neck_keeps_the_face_and_no_back_keeps_the_front(heads) -> None:
    assert heads["cut_neck"].landmark_present.all()
    v = heads["no_back"].to_canonical.apply(heads["no_back"].true_vertices)
    gone = ~heads["no_back"].vertex_present
    assert v[gone, 2].mean() < v[~gone, 2].mean()


def test_masked_landmarks_are_not_scored(base) -> None:
    cut = replace(base, landmark_present=np.arange(68) >= 10)
    e = landmark_errors(cut, np.full((68, 3), np.nan))
    assert np.isnan(e[:10]).all() and (e[10:] == NOT_PLACED).all()
    s = summarize_landmarks(e[None])
    assert s["scored"] == 58 and s["not_placed"] == 58 and s["within_2pct"] == 0.0


def test_scalp_cap_adds_geometry_over_the_scalp(base, heads) -> None:
    head = heads["scalp_cap"]
    assert len(head.scan.vertices) > len(base.scan.vertices)
    np.testing.assert_array_equal(head.scan.vertices[: len(base.scan.vertices)],
                                  base.scan.vertices)
    assert head.vertex_present.all() and head.landmark_present.all()
    added = head.to_canonical.apply(head.scan.vertices[len(base.scan.vertices):])
    brows = head.to_canonical.apply(head.true_landmarks[partial.BROWS])[:, 1].mean()
    assert added[:, 1].min() > brows
    assert len(head.scan.uv_faces) == len(head.scan.faces)


def test_shoulders_add_a_body_below_the_neck(base, heads) -> None:
    head = heads["shoulders"]
    canon = head.to_canonical.apply(head.scan.vertices)  # template frame and units
    height = np.ptp(base.deformed_vertices[:, 1])
    neck_end = base.deformed_vertices[:, 1].min()
    # Wider than the head, reaching well below FLAME's neck, textured like the rest.
    assert np.ptp(canon[:, 0]) > 1.1 * np.ptp(base.deformed_vertices[:, 0])
    assert canon[:, 1].min() < neck_end - 0.3 * height
    assert len(head.scan.uv_faces) == len(head.scan.faces)
    # Only the neck inside the body is gone: the face and its landmarks are all there.
    assert head.landmark_present.all()
    gone = head.to_canonical.apply(head.true_vertices[~head.vertex_present])
    assert len(gone) and (gone[:, 1] < neck_end + 0.15 * height).all()


def _expressed(flame_template, facescape_texture, landmark_embedding, face, seed=0):
    from reflame_core.synthetic.head import SMALL_TARGET_VERTICES, make_synthetic_head

    return make_synthetic_head(
        flame_template, facescape_texture, landmark_embedding, seed=seed,
        target_vertices=SMALL_TARGET_VERTICES,
        expression=face.deformation(flame_template.faces, landmark_embedding))


def test_open_jaw_parts_the_lips_and_keeps_the_skull(
        base, flame_template, facescape_texture, landmark_embedding) -> None:
    face = expression.Expression(jaw_deg=15.0, corners=0.0, brows=0.0, mouth_inside=False)
    head = _expressed(flame_template, facescape_texture, landmark_embedding, face)
    height = np.ptp(base.deformed_vertices[:, 1])
    moved = np.linalg.norm(head.deformed_vertices - base.deformed_vertices, axis=1) / height
    lmk = base.to_canonical.apply(base.true_landmarks)
    # The skull does not move: everything above the nose's base stays where it was.
    assert moved[base.deformed_vertices[:, 1] > lmk[jaw.NOSE_BASE, 1]].max() < 1e-12
    # The chin drops and swings back, as a jaw turning in front of the ears moves it.
    chin = head.to_canonical.apply(head.true_landmarks[jaw.CHIN]) - lmk[jaw.CHIN]
    assert chin[1] < -0.05 * height and chin[2] < 0
    # The lips part where they touched instead of stretching: the inner lips' middles
    # (iBUG 62 above, 66 below) move apart, the upper one hardly at all.
    gap = expression.mouth_gap(head) - expression.mouth_gap(base)
    assert gap > 0.05 * height
    upper = head.to_canonical.apply(head.true_landmarks[62]) - lmk[62]
    assert np.linalg.norm(upper) < 0.1 * gap
    # The truth is exact on the scan made from the expressed template.
    q = MeshQuery(head.scan.vertices, head.scan.faces, centroids=64)
    assert q.closest(head.true_landmarks).distance.max() / head_height(head) < 1e-5


def test_world_expressions_open_some_mouths_and_fill_some(flame_template, facescape_texture,
                                                          landmark_embedding) -> None:
    """Over seeds, the scenario makes closed and open mouths, with a dark inside and
    without; filling adds geometry and keeps the truth."""
    from reflame_core.synthetic.world import condition_rng, make_world_head

    faces = [expression.Expression.draw(condition_rng(seed, "expression")) for seed in range(12)]
    assert any(f.jaw_deg == 0 for f in faces) and any(f.mouth_inside for f in faces)
    assert any(f.jaw_deg > 0 and not f.mouth_inside for f in faces)
    seed = next(s for s, f in enumerate(faces) if f.mouth_inside)
    head = make_world_head(flame_template, facescape_texture, landmark_embedding,
                           "expression", seed, target_vertices=4000)
    bare = _expressed(flame_template, facescape_texture, landmark_embedding, faces[seed], seed)
    assert len(head.scan.vertices) > len(bare.scan.vertices)
    np.testing.assert_array_equal(head.true_vertices, bare.true_vertices)
    assert expression.mouth_gap(head) > 0.01 * head_height(head) * head.to_canonical.scale


def test_noise_moves_vertices_not_the_template(base, heads) -> None:
    head = heads["noise"]
    d = np.linalg.norm(head.scan.vertices - base.scan.vertices, axis=1) / head_height(base)
    assert 1e-4 < np.median(d) < 5e-3
    np.testing.assert_array_equal(head.deformed_vertices, base.deformed_vertices)


def test_write_keeps_masks_and_no_texture(heads, tmp_path) -> None:
    head = apply_scenario(heads["no_back"], ("no_texture",), SEED)
    obj = write_synthetic_head(head, tmp_path / "head")
    assert not (tmp_path / "head" / "scan.mtl").exists()
    assert not load_scan(obj).has_texture
    truth = np.load(tmp_path / "head" / "truth.npz")
    np.testing.assert_array_equal(truth["vertex_present"], head.vertex_present)
    np.testing.assert_array_equal(truth["landmark_present"], head.landmark_present)
