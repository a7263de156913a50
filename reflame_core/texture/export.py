"""Export a fitted FLAME mesh with its baked texture: OBJ + MTL + PNG, FLAME topology and UVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reflame_core.assets.flame import FlameTemplate
from reflame_core.io.obj import write_obj


def export_textured_fit(
    folder: str | Path,
    vertices: np.ndarray,
    template: FlameTemplate,
    texture: np.ndarray,
    *,
    name: str = "fit_textured",
) -> Path:
    """Write ``<folder>/<name>.obj`` with ``<name>.mtl`` and ``<name>.png`` beside it.

    The mesh keeps FLAME's vertex order, faces and UVs exactly (UV seams per corner), so any
    FLAME tool can reuse the texture. The eyeballs keep FLAME's UVs in tile 2 (u in [2,3]);
    viewers repeat the texture there by default, so they show face-texture colours. The PNG
    is stored row 0 = top with OBJ's v up, the convention of Blender and trimesh.

    Args:
        folder: output folder (created if needed).
        vertices: (5023,3) fitted vertices, in whatever frame and units the user wants.
        template: FLAME topology and UVs.
        texture: (R,R,3) uint8, row 0 = top (a ``BakeResult.texture``).
        name: file stem.

    Returns:
        The OBJ path.
    """
    verts = np.asarray(vertices)
    if verts.shape != template.vertices.shape:
        raise ValueError(
            f"export_textured_fit: vertices must be {template.vertices.shape}, got {verts.shape}"
        )
    tex = np.asarray(texture)
    if tex.ndim != 3 or tex.shape[2] != 3 or tex.dtype != np.uint8:
        raise ValueError(
            f"export_textured_fit: texture must be (H,W,3) uint8, got {tex.shape} {tex.dtype}"
        )
    return write_obj(
        Path(folder) / f"{name}.obj",
        verts,
        template.faces,
        uv=template.uv,
        uv_faces=template.uv_faces,
        texture=tex,
    )
