"""Scans whose faces are wound inward: found per part, turned outward on load, and then
detected and fitted like the original."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from reflame_core.geometry.orientation import inward_faces, outward_balance
from reflame_core.io.obj import write_obj
from reflame_core.io.scan import load_scan
from reflame_core.synthetic.world import load_world_assets, make_world_head


def test_balance_of_a_sphere_is_one_outward_and_minus_one_inward():
    s = trimesh.creation.icosphere(3)
    assert outward_balance(s.vertices, s.faces)[0] == pytest.approx(1.0, abs=1e-3)
    assert outward_balance(s.vertices, s.faces[:, ::-1])[0] == pytest.approx(-1.0, abs=1e-3)


def test_an_inward_eyeball_inside_an_outward_head_is_the_only_part_turned():
    head = trimesh.creation.icosphere(3)
    eye = trimesh.creation.icosphere(2)
    v = np.concatenate([head.vertices, 0.15 * eye.vertices + [0.3, 0.2, 0.7]])
    f = np.concatenate([head.faces, eye.faces[:, ::-1] + len(head.vertices)])
    turned = inward_faces(v, f)
    assert not turned[: len(head.faces)].any()
    assert turned[len(head.faces):].all()


def test_a_mouth_cavity_exported_apart_is_left_facing_out_of_the_head():
    """A cone opening forward (a mouth's inside as its own part, 3% of the area): it faces its
    own axis, so about its own centre it reads inward, but it faces out of the head."""
    head = trimesh.creation.icosphere(3)
    k = 32
    angle = 2 * np.pi * np.arange(k) / k
    rim = np.stack([0.3 * np.cos(angle), 0.3 * np.sin(angle) - 0.4, np.full(k, 0.85)], 1)
    apex = np.array([[0.0, -0.4, 0.55]])
    cone = np.stack([np.arange(k), (np.arange(k) + 1) % k, np.full(k, k)], 1)
    v = np.concatenate([head.vertices, rim, apex])
    cone = cone + len(head.vertices)
    normals = np.cross(v[cone[:, 1]] - v[cone[:, 0]], v[cone[:, 2]] - v[cone[:, 0]])
    if normals[:, 2].mean() < 0:  # wound to face forward, out of the mouth
        cone = cone[:, ::-1]
    assert outward_balance(v, cone)[0] < -0.2  # inward about its own centre
    assert not inward_faces(v, np.concatenate([head.faces, cone])).any()
    # The whole scan mirrored: head and cavity are turned back together.
    assert inward_faces(v, np.concatenate([head.faces, cone])[:, ::-1]).all()


@pytest.fixture(scope="module")
def holed_heads(data_dir):
    w = load_world_assets(data_dir)
    return w, [make_world_head(w.template, w.texture, w.embedding, scenario, seed,
                               target_vertices=4000).scan
               for scenario, seed in (("wild_mix", 2002), ("no_back", 2010), ("holes", 2010),
                                      ("scalp_cap", 2001))]


def test_cut_holed_and_capped_heads_have_nothing_turned(holed_heads):
    # wild_mix 2002's holes cut off a concave 41-face piece whose own centroid lies in front
    # of it: judged alone it would read as inward.
    for scan in holed_heads[1]:
        assert not inward_faces(scan.vertices, scan.faces).any()


def test_a_mirrored_export_loads_wound_outward_with_its_uvs_and_a_note(holed_heads, tmp_path):
    scan = holed_heads[1][0]
    path = write_obj(tmp_path / "mirrored.obj", scan.vertices, scan.faces[:, ::-1],
                     uv=scan.uv, uv_faces=scan.uv_faces[:, ::-1], texture=scan.texture)
    loaded = load_scan(path)
    as_is = load_scan(write_obj(tmp_path / "as_is.obj", scan.vertices, scan.faces,
                                uv=scan.uv, uv_faces=scan.uv_faces, texture=scan.texture))
    np.testing.assert_array_equal(loaded.faces, as_is.faces)
    np.testing.assert_array_equal(loaded.uv[loaded.uv_faces], as_is.uv[as_is.uv_faces])
    assert any("wound inward" in n and "turned outward" in n for n in loaded.notes)
    assert not any("wound inward" in n for n in as_is.notes)


def test_a_mirrored_triangle_soup_is_turned_as_one_part(holed_heads):
    """Every face with its own three vertices (an unwelded export): the faces are joined by
    position, so the head is judged as the head it is."""
    scan = holed_heads[1][1]
    corners = scan.vertices[scan.faces].reshape(-1, 3)
    soup = np.arange(len(corners)).reshape(-1, 3)
    assert inward_faces(corners, soup[:, ::-1]).all()
    assert not inward_faces(corners, soup).any()


def test_faces_reversed_at_random_are_wound_back_as_their_neighbours(holed_heads):
    """Half the faces reversed (a broken remesher): a part wound both ways balances near 0
    and said nothing. Made to agree across shared edges first, the head is judged whole."""
    scan = holed_heads[1][1]
    half = np.random.default_rng(0).random(len(scan.faces)) < 0.5
    mixed = np.where(half[:, None], scan.faces[:, ::-1], scan.faces)
    turned = inward_faces(scan.vertices, mixed)
    np.testing.assert_array_equal(np.where(turned[:, None], mixed[:, ::-1], mixed), scan.faces)
