"""What the fit is compared against: scan renders, scan surface samples, 3D landmarks.

Built once per scan and camera set (and again when the user changes views or landmarks),
in the canonical frame, on the fitting device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.io.mesh import Scan
from reflame_core.landmarks.definitions import landmark_definitions
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.render.cameras import OrbitCameras

if TYPE_CHECKING:
    from scipy.spatial import cKDTree


@dataclass
class ScanTargets:
    """Scan renders for the fitting views and samples of the scan surface.

    Attributes:
        view_ids: the B views rendered, indices into the cameras.
        mask: [B,H,W,1] float scan coverage.
        depth: [B,H,W,1] camera-space depth, 0 where empty.
        positions: [B,H,W,3] canonical 3D point seen through each pixel.
        covered: [B,H,W,1] bool: pixels that see the scan's outer surface (a front-facing
            triangle); the depth and dense terms compare only these.
        samples, sample_normals: (S,3) area-uniform points on the scan surface, unit normals.
        sample_tree: k-d tree over ``samples`` (CPU fitting only).
    """

    view_ids: list[int]
    mask: torch.Tensor
    depth: torch.Tensor
    positions: torch.Tensor
    covered: torch.Tensor
    samples: torch.Tensor
    sample_normals: torch.Tensor
    sample_tree: cKDTree | None


def front_facing(tri_id: torch.Tensor, positions: torch.Tensor, vertices: torch.Tensor,
                 faces: torch.Tensor, eyes: torch.Tensor) -> torch.Tensor:
    """[B,H,W] bool: the pixel sees a triangle from its outer side.

    A scan cut open (no back of the head, a cut neck) shows its inside through the cut: from
    behind, the inner side of the face. Its depth is not where the fit's surface belongs, and
    pulling the back of the head towards it folds the fit. Outer = the side the triangle's
    winding points to, as for the surface terms' normals; a scan wound the other way round
    (its triangles facing the head's centre, by the sign of the volume they enclose with it)
    is read with its winding flipped.

    Args:
        tri_id: [B,H,W] int triangle per pixel, -1 where empty.
        positions: [B,H,W,3] point seen through each pixel.
        vertices, faces: the rendered mesh (V,3), (F,3).
        eyes: (B,3) camera centres.
    """
    tri = vertices[faces]
    normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = vertices.mean(0)
    if (normals * (tri.mean(1) - centre)).sum() < 0:
        normals = -normals
    n = normals[tri_id.clamp_min(0).long()]
    toward_eye = eyes[:, None, None, :] - positions
    return (tri_id >= 0) & ((n * toward_eye).sum(-1) > 0)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` area-uniform points (S,3) on a mesh and their face normals (S,3), float32."""
    tri = np.asarray(vertices, np.float64)[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = rng.random((2, count))
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = np.einsum("sk,skd->sd", bary, tri[face])
    normals = cross[face] / np.maximum(area[face], 1e-20)[:, None]
    return points.astype(np.float32), normals.astype(np.float32)


def build_scan_targets(
    scan: Scan, renderer, views: list[int], num_samples: int, device: str, seed: int = 0
) -> ScanTargets:
    """Render ``scan`` (already in the canonical frame) in ``views`` and sample its surface."""
    verts = torch.as_tensor(scan.vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(scan.faces, dtype=torch.int64, device=device)
    with torch.no_grad():
        out = renderer.render(verts, faces, attrs={"position": verts}, views=views)
        eyes = torch.as_tensor(renderer.cameras.camera_positions()[list(views)],
                               dtype=torch.float32, device=device)
        covered = front_facing(out.tri_id, out.attrs["position"], verts, faces, eyes)[..., None]
    pts, nrm = sample_surface(scan.vertices, scan.faces, num_samples, seed)
    tree = None
    if device == "cpu":
        from scipy.spatial import cKDTree  # CPU only: a GPU fit never loads scipy's trees

        tree = cKDTree(pts)
    return ScanTargets(
        view_ids=list(views),
        mask=out.mask.detach(),
        depth=out.depth.detach(),
        positions=out.attrs["position"].detach(),
        covered=covered,
        samples=torch.from_numpy(pts).to(device),
        sample_normals=torch.from_numpy(nrm).to(device),
        sample_tree=tree,
    )


@dataclass
class LandmarkTargets:
    """3D landmark targets on the scan, canonical frame.

    Attributes:
        indices: (L,) int64 iBUG index (0..67) of each target: the row of the FLAME embedding.
        points: (L,3) float32 canonical positions.
        weights: (L,) float32 per-landmark weight (0 for disabled ones); for detected
            landmarks it includes the detector's confidence.
        groups: L group names (contour, brows, nose, eyes, lips, ears).
        trusted: (L,) bool, placed by an artist ("edited"): the robust kernel never
            discounts them. None (the default) means none is.
        confidence: (L,) float32 in [0,1], the detector's confidence already in ``weights``
            (1 for edited landmarks and where none is known; the default).
    """

    indices: np.ndarray
    points: np.ndarray
    weights: np.ndarray
    groups: list[str]
    trusted: np.ndarray | None = None
    confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.indices)
        self.trusted = (
            np.zeros(n, bool) if self.trusted is None else np.asarray(self.trusted, bool)
        )
        if self.trusted.shape != (n,):
            raise ValueError(f"trusted must be ({n},), got {self.trusted.shape}")
        self.confidence = (
            np.ones(n, np.float32) if self.confidence is None
            else np.clip(np.asarray(self.confidence, np.float32), 0.0, 1.0)
        )
        if self.confidence.shape != (n,):
            raise ValueError(f"confidence must be ({n},), got {self.confidence.shape}")

    @classmethod
    def from_points(cls, points: np.ndarray, indices: np.ndarray | None = None) -> LandmarkTargets:
        """Targets for iBUG landmarks at ``points`` (L,3), all enabled with weight 1."""
        idx = np.arange(len(points)) if indices is None else np.asarray(indices, np.int64)
        return cls(
            indices=idx,
            points=np.asarray(points, np.float32),
            weights=np.ones(len(idx), np.float32),
            groups=[landmark_definitions().groups[int(i)] for i in idx],
        )

    @classmethod
    def from_landmark_set(cls, landmarks: LandmarkSet, scan: Scan) -> LandmarkTargets:
        """The enabled, placed iBUG landmarks of a ``LandmarkSet`` on ``scan`` (scan frame).

        Extras (ear points, eye centres) have no FLAME embedding and are left to the
        detectors and the GUI. A detected landmark's weight is multiplied by its confidence;
        an edited one keeps its full weight (the artist's word, whatever the detector said)
        and is marked ``trusted``.
        """
        keep = landmarks.enabled_mask & (landmarks.ibug_indices >= 0)
        groups = landmarks.groups
        edited = np.array([p == "edited" for p in landmarks.provenance], bool)
        confidence = np.where(edited, 1.0, np.clip(landmarks.confidence, 0.0, 1.0))
        return cls(
            indices=landmarks.ibug_indices[keep],
            points=landmarks.positions(scan.vertices, scan.faces)[keep].astype(np.float32),
            weights=(landmarks.weights * confidence)[keep].astype(np.float32),
            groups=[g for g, k in zip(groups, keep, strict=True) if k],
            trusted=edited[keep],
            confidence=confidence[keep],
        )


def landmark_view_weights(
    targets: LandmarkTargets,
    cameras: OrbitCameras,
    views: list[int],
    scan_depth: torch.Tensor,
    frontal_range: float,
    group_weights: dict[str, float],
    depth_tolerance: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each landmark takes part in the 2D reprojection term.

    A landmark counts in a view when the view is within ``frontal_range`` degrees of frontal
    (ears: any view) and the scan is not in front of it there (depth test against the scan
    render, ``depth_tolerance`` canonical units).

    Returns:
        target_px (B,L,2) pixel positions of the targets and weight (B,L): group weight where
        visible, else 0.
    """
    device = scan_depth.device
    pix, depth = cameras.project(targets.points, views)
    res = cameras.resolution
    azim = np.abs(((cameras.azimuths[views] + 180.0) % 360.0) - 180.0)
    frontal = azim <= frontal_range
    is_ear = np.array([g == "ears" for g in targets.groups])
    in_view = frontal[:, None] | is_ear[None, :]
    xi = np.clip(pix[..., 0].astype(int), 0, res - 1)
    yi = np.clip(pix[..., 1].astype(int), 0, res - 1)
    inside = (pix[..., 0] >= 0) & (pix[..., 0] < res) & (pix[..., 1] >= 0) & (pix[..., 1] < res)
    seen = scan_depth[..., 0].cpu().numpy()[np.arange(len(views))[:, None], yi, xi]
    unoccluded = (seen <= 0) | (depth <= seen + depth_tolerance)
    group_w = np.array([group_weights.get(g, 0.0) for g in targets.groups], np.float32)
    weight = (in_view & inside & unoccluded) * (group_w * targets.weights)[None, :]
    return (
        torch.as_tensor(pix, dtype=torch.float32, device=device),
        torch.as_tensor(weight, dtype=torch.float32, device=device),
    )
