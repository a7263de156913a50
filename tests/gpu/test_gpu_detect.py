"""Landmark detection renders on the GPU: textured and untextured scans give a face there too
(the untextured shading once mixed CPU and CUDA tensors and lost every landmark)."""

from __future__ import annotations

import numpy as np
import pytest

from reflame_core.landmarks.detect import detect_landmarks
from reflame_core.synthetic.world import load_world_assets, make_world_head


@pytest.mark.parametrize("scenario", ["base", "no_texture"])
def test_detection_on_cuda_finds_the_face(data_dir, scenario) -> None:
    a = load_world_assets(data_dir)
    head = make_world_head(a.template, a.texture, a.embedding, scenario, 2001,
                           target_vertices=4000)
    lms = detect_landmarks(head.scan, backend="mediapipe", device="cuda",
                           to_canonical=head.to_canonical)
    height = np.ptp(head.to_canonical.apply(head.true_vertices)[:, 1]) / head.to_canonical.scale
    err = np.linalg.norm(lms.positions(head.scan.vertices, head.scan.faces)[:68]
                         - head.true_landmarks, axis=1) / height
    assert lms.placed_mask[:68].all()
    assert np.mean(err < 0.02) >= 0.8, np.round(err, 3)
