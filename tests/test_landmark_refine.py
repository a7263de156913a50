"""Landmarks read off a FLAME fit (``fit/landmark_refine.py``): a jaw line the detector put
4% of head height too low comes back to the jaw, and the inner landmarks stay put."""

from __future__ import annotations

import numpy as np

from reflame_core.fit.config import FitConfig
from reflame_core.fit.landmark_refine import landmarks_from_fit
from reflame_core.fit.setup import FlameAssets
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.synthetic.head import SMALL_TARGET_VERTICES
from reflame_core.synthetic.scoring import landmark_errors
from reflame_core.synthetic.world import load_world_assets, make_world_head


def test_a_jaw_line_read_too_low_comes_back_to_the_jaw(data_dir):
    a = load_world_assets(data_dir)
    head = make_world_head(a.template, a.texture, a.embedding, "shape", 2001,
                           target_vertices=SMALL_TARGET_VERTICES)
    true = head.true_landmark_set()
    # The detector's jaw line, 4% of head height below the true one (scan frame; the head
    # is upright in its canonical frame, so "down" is the canonical -y mapped back).
    height = np.ptp(head.to_canonical.apply(head.true_vertices)[:, 1])
    down = head.to_canonical.inverse().apply(np.array([[0.0, -0.04 * height, 0.0]]))[0] \
        - head.to_canonical.inverse().apply(np.zeros((1, 3)))[0]
    points = true.positions(head.scan.vertices, head.scan.faces)
    points[:17] += down
    hits = MeshQuery(head.scan.vertices, head.scan.faces).closest(points)
    detected = LandmarkSet(names=true.names, num_faces=true.num_faces, face_idx=hits.face,
                           bary=hits.bary / hits.bary.sum(1, keepdims=True),
                           confidence=np.r_[np.full(17, 0.3), np.ones(51)])
    before = landmark_errors(head, detected.positions(head.scan.vertices, head.scan.faces))
    assert np.mean(before[:17] < 0.02) < 0.3  # the jaw line really is off

    config = FitConfig.preset("fast").with_overrides(["stages.coarse.steps=60",
                                                      "stages.refine.steps=20"])
    refined = landmarks_from_fit(head.scan, detected, FlameAssets(a.template, a.embedding),
                                 to_canonical=head.to_canonical, config=config)
    after = landmark_errors(head, refined.positions(head.scan.vertices, head.scan.faces))
    assert np.mean(after[:17] < 0.02) >= 0.9, np.round(after[:17], 3)
    assert np.median(after[17:]) < 0.01, np.round(after[17:], 3)
    assert refined.enabled_mask[:68].all()
    # Sure where the fit lies on the scan: the jaw line the detector doubted included.
    assert refined.confidence[:17].min() > 0.5


def test_a_landmark_over_a_hole_is_left_unplaced(data_dir):
    a = load_world_assets(data_dir)
    head = make_world_head(a.template, a.texture, a.embedding, "base", 2002,
                           target_vertices=SMALL_TARGET_VERTICES)
    scan = head.scan
    size = float(scan.extent.max())  # scan units
    centroids = scan.vertices[scan.faces].mean(1)
    near_chin = np.linalg.norm(centroids - head.true_landmarks[8], axis=1) < 0.06 * size
    holed = type(scan)(vertices=scan.vertices, faces=scan.faces[~near_chin])
    hits = MeshQuery(holed.vertices, holed.faces).closest(head.true_landmarks)
    given = LandmarkSet(names=head.true_landmark_set().names, num_faces=len(holed.faces),
                        face_idx=hits.face, bary=hits.bary / hits.bary.sum(1, keepdims=True),
                        confidence=np.ones(68))
    config = FitConfig.preset("fast").with_overrides(["stages.coarse.steps=30",
                                                      "stages.refine.steps=10"])
    refined = landmarks_from_fit(holed, given, FlameAssets(a.template, a.embedding),
                                 to_canonical=head.to_canonical, config=config)
    assert not refined.placed_mask[8] and not refined.enabled_mask[8]
    assert refined.confidence[8] == 0.0
    away = np.linalg.norm(head.true_landmarks - head.true_landmarks[8], axis=1) > 0.1 * size
    assert away.sum() > 40 and refined.placed_mask[away].all()
