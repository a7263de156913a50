"""Synthetic head scans with known ground truth, built from the FLAME template.

FLAME template -> smooth random deformation (Gaussian RBF displacement fields) -> remeshed to
a different topology (1->4 subdivision, optional random edge collapses, in-surface jitter so
no scan vertex sits on a template vertex) -> FLAME UVs per corner + a real face texture ->
a random similarity into the scan's own frame. Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reflame_core.assets.flame import FlameTemplate, LandmarkEmbedding
from reflame_core.geometry.similarity import Similarity
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.mesh import Scan
from reflame_core.io.obj import write_obj
from reflame_core.landmarks.definitions import landmark_definitions
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.synthetic.remesh import UvMesh, decimate, jitter_in_surface, subdivide

# Vertex count of the small variant for CI tests: below the template's 5023 vertices the
# template is decimated without subdividing, which is fast. The default (~20k) is one 1->4
# subdivision; counts in between are subdivided and then decimated (slower).
SMALL_TARGET_VERTICES = 4000


@dataclass
class SyntheticHead:
    """A synthetic scan and its truth.

    Attributes:
        scan: the remeshed, textured head in its own frame (float32, units "unknown").
        true_vertices: (5023,3) where each deformed FLAME vertex lies on the scan (scan frame).
        true_landmarks: (68,3) the 68 iBUG landmarks on the scan (scan frame).
        to_canonical: scan frame -> template frame (where the deformed template lives).
        texture_truth: (H,W,3) uint8 FLAME-UV texture, row 0 = v=1 (OBJ convention).
        deformed_vertices: (5023,3) the deformed template in the template frame.
        vertex_present: (5023,) bool, False where a true vertex is no longer on the scan
            (cut away by a partial-scan condition, ``synthetic/partial.py``); its position in
            ``true_vertices`` is then where the surface was.
        landmark_present: (68,) bool, the same for the true landmarks.
    """

    scan: Scan
    true_vertices: np.ndarray
    true_landmarks: np.ndarray
    to_canonical: Similarity
    texture_truth: np.ndarray
    deformed_vertices: np.ndarray
    vertex_present: np.ndarray
    landmark_present: np.ndarray

    def true_landmark_set(self) -> LandmarkSet:
        """The 68 true landmarks as a ``LandmarkSet`` on the scan's faces (as if an artist
        had placed them exactly), for tests and benchmarks that skip detection."""
        hits = MeshQuery(self.scan.vertices, self.scan.faces).closest(self.true_landmarks)
        names = landmark_definitions().ibug_names
        return LandmarkSet(names=names, num_faces=len(self.scan.faces), face_idx=hits.face,
                           bary=hits.bary / hits.bary.sum(1, keepdims=True),
                           confidence=np.ones(len(names)))


def smooth_deformation(
    vertices: np.ndarray,
    rng: np.random.Generator,
    amplitude: float,
    num_bumps: int = 6,
    radius: float = 0.3,
) -> np.ndarray:
    """Displaced vertices (V,3): a sum of Gaussian bumps with random centres and directions.

    ``amplitude`` and ``radius`` are fractions of the head height (y extent).
    """
    v = np.asarray(vertices, np.float64)
    height = float(np.ptp(v[:, 1]))
    centres = v[rng.choice(len(v), num_bumps, replace=False)]
    sigmas = radius * height * rng.uniform(0.6, 1.2, num_bumps)
    dirs = rng.normal(size=(num_bumps, 3))
    dirs *= (amplitude * height * rng.uniform(0.5, 1.0, num_bumps) / np.linalg.norm(dirs, axis=1))[
        :, None
    ]
    return v + gaussian_bumps(v, centres, sigmas, dirs)


def gaussian_bumps(
    points: np.ndarray, centres: np.ndarray, sigmas: np.ndarray, dirs: np.ndarray
) -> np.ndarray:
    """Displacements (N,3) at ``points`` (N,3): sum over bumps k of
    ``dirs[k] * exp(-|p - centres[k]|^2 / (2 sigmas[k]^2))``; centres (K,3), sigmas (K,),
    dirs (K,3), all in the points' units."""
    p = np.asarray(points, np.float64)
    d2 = ((p[:, None, :] - centres[None]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigmas**2)) @ dirs


def random_similarity(
    rng: np.random.Generator, scale_range: tuple[float, float], max_rotation_deg: float
) -> Similarity:
    """Random scale, rotation (<= max angle about a random axis) and translation (~0.5 units)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    return Similarity(rng.uniform(*scale_range), rot, rng.normal(scale=0.5, size=3))


def make_synthetic_head(
    template: FlameTemplate,
    texture: np.ndarray,
    embedding: LandmarkEmbedding,
    *,
    seed: int = 0,
    target_vertices: int = 20000,
    deform_amplitude: float = 0.04,
    num_bumps: int = 6,
    scale_range: tuple[float, float] = (0.08, 0.3),
    max_rotation_deg: float = 10.0,
    expression: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SyntheticHead:
    """Build a synthetic scan with known correspondence to FLAME.

    Args:
        template: FLAME template (canonical frame).
        texture: (H,W,3) uint8 FLAME-UV texture, row 0 = top, as ``facescape_texmap.jpg`` is
            stored: rendered with the template's OBJ-convention UVs it shows the face upright
            (checked by rendering), so it is used as it is.
        embedding: the 68-landmark embedding.
        seed: everything random comes from it.
        target_vertices: about how many scan vertices; one subdivision gives ~20k, fewer are
            reached by random edge collapses (``SMALL_TARGET_VERTICES`` for fast tests).
            Must stay >= 5023 * 0.75 or so: beyond that too few collapsible edges remain.
        deform_amplitude: largest displacement, as a fraction of head height.
        scale_range, max_rotation_deg: of the random similarity into the scan frame.
        expression: (5023,3) -> (5023,3), the subject's facial expression
            (``synthetic/expression.py``), applied to the deformed template before the scan
            is made from it. It draws nothing from ``seed``'s generator, so a seed gives the
            same subject's shape with and without it (the remeshing may differ).
    """
    rng = np.random.default_rng(seed)
    deformed = smooth_deformation(template.vertices, rng, deform_amplitude, num_bumps)
    if expression is not None:
        deformed = expression(deformed)
    mesh = UvMesh(
        deformed,
        template.faces.astype(np.int64),
        template.uv.astype(np.float64),
        template.uv_faces.astype(np.int64),
    )
    if target_vertices >= len(mesh.vertices):
        mesh = subdivide(mesh)
    if target_vertices < len(mesh.vertices):
        mesh = decimate(mesh, target_vertices, rng)
    mesh = jitter_in_surface(mesh, rng)

    # Truth must be exact: many more candidate triangles than the default query takes.
    query = MeshQuery(mesh.vertices, mesh.faces, centroids=64)
    true_canon = query.closest(deformed).points.astype(np.float64)
    lmk_canon = query.closest(embedding.points(deformed, template.faces)).points.astype(np.float64)
    to_scan = random_similarity(rng, scale_range, max_rotation_deg)
    texture_truth = np.ascontiguousarray(np.asarray(texture, np.uint8)[:, :, :3])
    scan = Scan(
        vertices=to_scan.apply(mesh.vertices).astype(np.float32),
        faces=mesh.faces,
        uv=mesh.uv.astype(np.float32),
        uv_faces=mesh.uv_faces,
        texture=texture_truth,
    )
    return SyntheticHead(
        scan=scan,
        true_vertices=to_scan.apply(true_canon),
        true_landmarks=to_scan.apply(lmk_canon),
        to_canonical=to_scan.inverse(),
        texture_truth=texture_truth,
        deformed_vertices=deformed,
        vertex_present=np.ones(len(deformed), bool),
        landmark_present=np.ones(len(lmk_canon), bool),
    )


def write_synthetic_head(head: SyntheticHead, folder: str | Path) -> Path:
    """Write ``scan.obj`` (+ ``scan.mtl``, ``scan.png``) and ``truth.npz`` into ``folder``.

    truth.npz holds true_vertices, true_landmarks, deformed_vertices, vertex_present,
    landmark_present and to_canonical as ``to_canonical_scale``, ``to_canonical_rotation``,
    ``to_canonical_translation``. A scan without texture is written without MTL/PNG.
    Returns the OBJ path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s = head.scan
    obj = write_obj(
        folder / "scan.obj", s.vertices, s.faces, uv=s.uv, uv_faces=s.uv_faces, texture=s.texture
    )
    tc = head.to_canonical
    np.savez(
        folder / "truth.npz",
        true_vertices=head.true_vertices,
        true_landmarks=head.true_landmarks,
        deformed_vertices=head.deformed_vertices,
        vertex_present=head.vertex_present,
        landmark_present=head.landmark_present,
        to_canonical_scale=np.float64(tc.scale),
        to_canonical_rotation=tc.rotation,
        to_canonical_translation=tc.translation,
    )
    return obj
