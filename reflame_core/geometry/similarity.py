"""Similarity transforms ``x' = s * R @ x + t`` between a scan's frame and the canonical frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    """Uniform scale ``s``, rotation ``R`` (3,3) and translation ``t`` (3,), float64.

    Maps points as ``x' = s * R @ x + t``; ``inverse()`` maps them back. Used to carry a scan
    into the canonical fitting frame and every result back into the scan's own frame and units.
    """

    scale: float = 1.0
    rotation: np.ndarray = None  # type: ignore[assignment]
    translation: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        rot = np.eye(3) if self.rotation is None else np.asarray(self.rotation, np.float64)
        trans = (
            np.zeros(3) if self.translation is None else np.asarray(self.translation, np.float64)
        )
        if rot.shape != (3, 3) or trans.shape != (3,):
            raise ValueError(f"Similarity needs R (3,3) and t (3,), got {rot.shape}, {trans.shape}")
        if not self.scale > 0:
            raise ValueError(f"Similarity scale must be positive, got {self.scale}")
        object.__setattr__(self, "rotation", rot)
        object.__setattr__(self, "translation", trans)
        object.__setattr__(self, "scale", float(self.scale))

    @classmethod
    def identity(cls) -> Similarity:
        return cls()

    @classmethod
    def from_matrix(cls, m: np.ndarray) -> Similarity:
        """From a 4x4 matrix whose upper-left block is ``s * R``."""
        m = np.asarray(m, np.float64)
        sr = m[:3, :3]
        s = float(np.cbrt(np.linalg.det(sr)))
        return cls(s, sr / s, m[:3, 3])

    @property
    def matrix(self) -> np.ndarray:
        """(4,4) homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points (..., 3); keeps the input dtype."""
        p = np.asarray(points)
        out = self.scale * p.astype(np.float64) @ self.rotation.T + self.translation
        return out.astype(p.dtype if p.dtype.kind == "f" else np.float64)

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Rotate directions (..., 3) such as normals; no scale, no translation."""
        v = np.asarray(vectors)
        return (v.astype(np.float64) @ self.rotation.T).astype(
            v.dtype if v.dtype.kind == "f" else np.float64
        )

    def inverse(self) -> Similarity:
        rt = self.rotation.T
        return Similarity(1.0 / self.scale, rt, -(rt @ self.translation) / self.scale)

    def compose(self, first: Similarity) -> Similarity:
        """The transform that applies ``first`` and then ``self``."""
        return Similarity(
            self.scale * first.scale,
            self.rotation @ first.rotation,
            self.scale * self.rotation @ first.translation + self.translation,
        )

    def to_dict(self) -> dict:
        return {
            "scale": self.scale,
            "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Similarity:
        return cls(float(d["scale"]), np.array(d["rotation"]), np.array(d["translation"]))
