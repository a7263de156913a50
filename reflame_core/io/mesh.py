"""The scan as the product sees it, whatever file it came from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from reflame_core.geometry.similarity import Similarity


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V,3) float32 for vertices (V,3) and faces (F,3)."""
    v = np.asarray(vertices, np.float64)
    tri = v[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.maximum(norm, 1e-20)).astype(np.float32)


@dataclass
class Scan:
    """A textured head scan.

    Attributes:
        vertices: (V,3) float32, in the file's own frame and units.
        faces: (F,3) int64 vertex indices, counter-clockwise seen from outside.
        uv: (T,2) float32 texture coordinates in OBJ convention (origin bottom-left, v up),
            or None. Per-corner through ``uv_faces`` so UV seams are kept.
        uv_faces: (F,3) int64 indices into ``uv``, or None.
        texture: (H,W,3) uint8 RGB, row 0 is the top of the image, or None.
        vertex_colors: (V,3) uint8 RGB, or None (PLY scans usually carry these).
        path: the file it was read from.
        units: what one unit of ``vertices`` is, when the file says ("m", "mm", ...), else
            "unknown".
        notes: what the loader found missing and went on without, or changed, one line each
            (a material library not beside the OBJ: no texture; several textures packed
            into one).
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    path: Path | None = None
    units: str = "unknown"
    notes: list[str] = field(default_factory=list)
    _normals: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def normals(self) -> np.ndarray:
        """(V,3) float32 unit vertex normals, computed once."""
        if self._normals is None:
            self._normals = vertex_normals(self.vertices, self.faces)
        return self._normals

    @property
    def has_texture(self) -> bool:
        return self.texture is not None and self.uv is not None and self.uv_faces is not None

    @property
    def extent(self) -> np.ndarray:
        """(3,) bounding-box size along x, y, z."""
        return self.vertices.max(0) - self.vertices.min(0)

    def transformed(self, sim: Similarity) -> Scan:
        """A copy with vertices mapped by ``sim`` (texture and UVs shared, not copied)."""
        return replace(self, vertices=sim.apply(self.vertices).astype(np.float32), _normals=None)

    def with_faces(self, keep: np.ndarray) -> Scan:
        """A copy with only the faces where ``keep`` (F,) bool is True; the vertices and UVs
        no kept face uses are dropped (the texture is shared, not copied)."""
        faces = self.faces[keep]
        used, new_faces = np.unique(faces, return_inverse=True)
        uv, uv_faces = self.uv, self.uv_faces
        if uv is not None and uv_faces is not None:
            used_uv, new_uv_faces = np.unique(uv_faces[keep], return_inverse=True)
            uv, uv_faces = uv[used_uv], new_uv_faces.reshape(-1, 3)
        colors = None if self.vertex_colors is None else self.vertex_colors[used]
        return replace(self, vertices=self.vertices[used], faces=new_faces.reshape(-1, 3),
                       uv=uv, uv_faces=uv_faces, vertex_colors=colors, _normals=None)
