"""Test helper: a textured scan turned into one with vertex colours (no texture)."""

from __future__ import annotations

import numpy as np

from reflame_core.io.mesh import Scan
from reflame_core.texture.bake import sample_bilinear


def vertex_colour_scan(scan: Scan) -> Scan:
    """``scan`` without its texture: each vertex takes the texture's colour at one of its
    corners (the last written, where UV seams give a vertex several)."""
    corner = sample_bilinear(scan.texture, scan.uv[scan.uv_faces].reshape(-1, 2))
    colors = np.zeros((len(scan.vertices), 3), np.float32)
    colors[scan.faces.ravel()] = corner
    return Scan(vertices=scan.vertices, faces=scan.faces, vertex_colors=colors.astype(np.uint8))
