"""FLAME topology: the template mesh with its UV layout, and the 68-landmark embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLAME_NUM_VERTICES = 5023
FLAME_NUM_FACES = 9976


@dataclass(frozen=True)
class FlameTemplate:
    """The FLAME template in the canonical fitting frame.

    Attributes:
        vertices: (5023,3) float32; canonical frame (+y up, +z towards the face, head inside
            about [-2,2], the frame of FLAME2023's ``flame_template.npz``).
        faces: (9976,3) int64.
        uv: (T,2) float32 FLAME UVs, OBJ convention (v up). Some u exceed 1: FLAME's extra
            UV tiles (eyeballs, mouth interior).
        uv_faces: (9976,3) int64 indices into ``uv``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])


@dataclass(frozen=True)
class LandmarkEmbedding:
    """The 68 iBUG landmarks as points on FLAME faces.

    Attributes:
        face_idx: (68,) int64 FLAME face per landmark.
        bary: (68,3) float32 barycentric coordinates on that face.
    """

    face_idx: np.ndarray
    bary: np.ndarray

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(68,3) landmark positions on a mesh in FLAME topology (vertices (5023,3))."""
        tri = np.asarray(vertices)[np.asarray(faces)[self.face_idx]]  # (68,3,3)
        return np.einsum("lk,lkd->ld", self.bary, tri)
