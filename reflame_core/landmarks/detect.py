"""``detect_landmarks``: render the scan from front-ish views, detect 2D landmarks, lift to 3D.

The scan is rendered textured (else with its vertex colours, else shaded grey) in the
canonical frame, so the default cameras see the face whatever the scan's own axes are.
Face ids and barycentrics do not depend on the frame, so the result is on the scan as given.
"""

from __future__ import annotations

import numpy as np
import torch

from reflame_core.geometry.frame import CANONICAL_EXTENT, canonical_frame
from reflame_core.geometry.similarity import Similarity
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.mesh import Scan, vertex_normals
from reflame_core.landmarks.definitions import NUM_IBUG, landmark_definitions
from reflame_core.landmarks.detector import LandmarkDetector, get_detector
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.landmarks.lifting import FusedLandmarks, fuse_views, lift_views
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer, RenderOutput

FRONTAL_RANGE_DEG = 40.0  # face landmarks only come from views within this of frontal


def default_cameras() -> OrbitCameras:
    """Views for detection: a ring over ±50° in 10° steps, 448² (±50° only serves ears)."""
    return OrbitCameras(num_views=11, azimuth_range=50.0, elevations=(0.0,), resolution=448)


def render_for_detection(scan: Scan, cameras: OrbitCameras, device: str = "cpu",
                         backend: str = "auto") -> tuple[np.ndarray, RenderOutput]:
    """Render a canonical-frame scan from every camera view.

    Returns (B,H,W,3) uint8 RGB images (black background) and the raw ``RenderOutput``
    (``tri_id`` (B,H,W) used for lifting).
    """
    renderer = MeshRenderer(cameras, backend=backend, device=device)
    views = list(range(cameras.num_total))
    verts = torch.as_tensor(scan.vertices, dtype=torch.float32)
    if scan.has_texture:
        tex = torch.as_tensor(scan.texture, dtype=torch.float32) / 255.0
        out = renderer.render(verts, scan.faces, uv=scan.uv, uv_faces=scan.uv_faces,
                              texture=tex, views=views)
        color = out.color
    else:
        normals = torch.as_tensor(vertex_normals(scan.vertices, scan.faces))
        attrs = {"normal": normals}
        if scan.vertex_colors is not None:
            attrs["albedo"] = torch.as_tensor(scan.vertex_colors, dtype=torch.float32) / 255.0
        out = renderer.render(verts, scan.faces, attrs=attrs, views=views)
        # Head-light shading so shape reads as shading, as a detector expects of a photo.
        dirs = torch.as_tensor(cameras.camera_positions(), dtype=torch.float32)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        n = torch.nn.functional.normalize(out.attrs["normal"], dim=-1)
        shade = (0.25 + 0.75 * (n * dirs[:, None, None]).sum(-1, keepdim=True).clamp(min=0))
        albedo = out.attrs.get("albedo", torch.full_like(shade, 0.7))
        color = albedo * shade * out.mask
    images = (color.detach().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return images, out


def _usable_views(cameras: OrbitCameras, names: tuple[str, ...]) -> np.ndarray:
    """(B,K) bool: face landmarks from front-ish views only; ears from any view."""
    az, el = np.radians(cameras.azimuths), np.radians(cameras.elevations_per_view)
    frontal = np.cos(az) * np.cos(el) >= np.cos(np.radians(FRONTAL_RANGE_DEG)) - 1e-9
    ears = np.array([landmark_definitions().group_of(n) == "ears" for n in names])
    return frontal[:, None] | ears[None, :]


def lift_detections(scan_canonical: Scan, cameras: OrbitCameras, detections: list,
                    tri_id: np.ndarray, names: tuple[str, ...]) -> FusedLandmarks:
    """Per-view detections (B) + triangle buffers (B,H,W) -> fused surface points (K)."""
    verts, faces = scan_canonical.vertices, scan_canonical.faces
    pixels, depths = cameras.project(verts)
    hits = lift_views(detections, tri_id, pixels, depths, cameras.camera_positions(),
                      verts, faces, names)
    return fuse_views(hits, _usable_views(cameras, names), MeshQuery(verts, faces),
                      CANONICAL_EXTENT)


def detect_landmarks(scan: Scan, *, cameras: OrbitCameras | None = None,
                     backend: str | LandmarkDetector = "auto", device: str = "cpu",
                     up: str = "+y", front: str = "+z",
                     to_canonical: Similarity | None = None) -> LandmarkSet:
    """Detect the 68 iBUG landmarks (+ extras the backend gives) as points on ``scan``.

    Args:
        scan: the scan in its own frame.
        cameras: views around the canonical frame; default ``default_cameras()``.
        backend: "auto" | "mediapipe" | "dwpose", or a detector object.
        device: torch device for rendering.
        up, front: the scan's up and face-front axes (for ``canonical_frame``).
        to_canonical: scan -> canonical similarity; overrides ``up``/``front`` when given.
    Returns:
        A ``LandmarkSet`` on the scan's faces; landmarks no view saw are unplaced (face -1).
    """
    detector = get_detector(backend) if isinstance(backend, str) else backend
    cameras = cameras or default_cameras()
    sim = to_canonical or canonical_frame(scan.vertices, up=up, front=front)
    canon = scan.transformed(sim)
    images, out = render_for_detection(canon, cameras, device=device)
    detections = detector.detect(images)
    defs = landmark_definitions()
    offered = {n for d in detections if d is not None for n in d.names}
    names = defs.ibug_names + tuple(n for n in defs.extra_names if n in offered)
    fused = lift_detections(canon, cameras, detections, out.tri_id.cpu().numpy(), names)
    enabled = fused.face >= 0
    enabled[NUM_IBUG:] &= fused.confidence[NUM_IBUG:] > 0.2
    return LandmarkSet(names=names, num_faces=len(scan.faces), face_idx=fused.face,
                       bary=fused.bary, confidence=fused.confidence, enabled=enabled)
