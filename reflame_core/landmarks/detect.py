"""``detect_landmarks``: render the scan from front-ish views, detect 2D points, lift to 3D.

Pipeline: render -> the detector's own 2D points per view -> lifted onto the surface through
each view's triangle buffer -> fused over views -> the detector's index table (in 3D) -> the
68 iBUG landmarks + extras, snapped onto the surface.

The scan is rendered textured (else with its vertex colours, else shaded grey) in the
canonical frame, so the default cameras see the face whatever the scan's own axes are; a scan
with colours is also detected shaded grey, and the two detections combined. A
detector may carry a second table for shaded grey renders (``untextured_table``): the
detector places points on shaded geometry differently. It may also carry lip rows for an
open mouth (``open_mouth_table``, used where its ``mouth_open`` reads the fused points so): a
table fitted on closed mouths may mix upper and lower lip points, which part when the mouth
opens.
Face ids and barycentrics do not depend on the frame, so the result is on the scan as given.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import torch

from reflame_core.geometry.frame import CANONICAL_EXTENT, canonical_frame
from reflame_core.geometry.similarity import Similarity
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.image import downscaled
from reflame_core.io.mesh import Scan, vertex_normals
from reflame_core.landmarks.definitions import NUM_IBUG, IndexTable, landmark_definitions
from reflame_core.landmarks.detector import LandmarkDetector, get_detector
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.landmarks.lifting import FusedLandmarks, fuse_views, lift_views
from reflame_core.landmarks.render_look import fill_holes, normalise_colours
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer, RenderOutput

# Points only come from views within this angle of frontal (ears: from any view). The seed
# used 40 degrees with its landmarks fused in 2D; fused in 3D with per-view facing weights, the
# views out to 60 degrees azimuth see the jaw squarely and make the contour (see RESULTS.md).
FRONTAL_RANGE_DEG = 65.0
GREY = 0.7  # albedo of a scan without texture or colours
LIGHT_RISE = 1.0  # untextured scans: light direction = camera direction + this x up (45°)
# FLAME's head (its bounding box, neck included) about its 68 landmarks, in units of their RMS
# distance from their centroid, in the canonical frame (+y up, +z front): its largest side,
# and its centre less their centroid. Measured on the FLAME 2020 template; real heads and
# the benchmark's differ by some 15%, which only moves the framing below.
HEAD_EXTENT_PER_RMS = 5.19
HEAD_CENTRE_PER_RMS = np.array([0.0, -0.17, -1.17])
# A face whose head is predicted to span less than this share of the scan's canonical
# extent (a bust with shoulders, a body) is small in every render: it is detected again in
# a frame closed in on the head.
ZOOM_BELOW = 0.7
# Largest texture side the detection renders sample (see ``detection_texture``).
DETECTION_TEXTURE_SIDE = 2048
_SMALL_TEXTURE: dict[str, tuple[weakref.ref, np.ndarray]] = {}


def default_cameras() -> OrbitCameras:
    """Views for detection: rings at 0 and 25 degrees below, azimuth ±60° in 10° steps, 448².

    The lower ring sees the jaw line and chin from below, where the level ring grazes them.
    """
    return OrbitCameras(num_views=13, azimuth_range=60.0, elevations=(0.0, -25.0),
                        resolution=448)


def detection_texture(texture: np.ndarray) -> np.ndarray:
    """``texture`` (H,W,3) uint8 scaled down to at most ``DETECTION_TEXTURE_SIDE`` a side.

    A 448² render of a head samples a few hundred texels across the face: an 8-16K
    photogrammetry texture only costs memory there (16K² as float32 is 3 GB) and aliases.
    The last result is kept, as orientation renders the same scan many times.
    """
    if max(texture.shape[:2]) <= DETECTION_TEXTURE_SIDE:
        return texture
    cached = _SMALL_TEXTURE.get("last")
    if cached is not None and cached[0]() is texture:
        return cached[1]
    small = downscaled(texture, DETECTION_TEXTURE_SIDE)
    _SMALL_TEXTURE["last"] = (weakref.ref(texture), small)
    return small


def render_for_detection(scan: Scan, cameras: OrbitCameras, device: str = "cpu",
                         backend: str = "auto") -> tuple[np.ndarray, RenderOutput]:
    """Render a canonical-frame scan from every camera view.

    Returns (B,H,W,3) uint8 RGB images (black background; what holes in the scan show painted
    over, ``render_look.fill_holes``) and the raw ``RenderOutput`` (``tri_id`` (B,H,W) used
    for lifting).
    """
    renderer = MeshRenderer(cameras, backend=backend, device=device)
    views = list(range(cameras.num_total))
    verts = torch.as_tensor(scan.vertices, dtype=torch.float32)
    if scan.has_texture:
        tex = torch.from_numpy(detection_texture(scan.texture)).float().div_(255.0)
        out = renderer.render(verts, scan.faces, uv=scan.uv, uv_faces=scan.uv_faces,
                              texture=tex, views=views)
        color = out.color
    else:
        normals = torch.as_tensor(vertex_normals(scan.vertices, scan.faces))
        attrs = {"normal": normals}
        if scan.vertex_colors is not None:
            attrs["albedo"] = torch.as_tensor(scan.vertex_colors, dtype=torch.float32) / 255.0
        out = renderer.render(verts, scan.faces, attrs=attrs, views=views)
        # Shading so shape reads as shading, as a detector expects of a photo: a key light
        # 45 degrees above each camera (the brow ridge and the nose shade what is below them;
        # lit from the camera, untextured brows were found 2% of head height too low).
        dev = out.mask.device
        dirs = torch.as_tensor(cameras.camera_positions(), dtype=torch.float32, device=dev)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        rise = torch.tensor([0.0, LIGHT_RISE, 0.0], device=dev)
        dirs = torch.nn.functional.normalize(dirs + rise, dim=1)
        n = torch.nn.functional.normalize(out.attrs["normal"], dim=-1)
        shade = (0.25 + 0.75 * (n * dirs[:, None, None]).sum(-1, keepdim=True).clamp(min=0))
        # Grey needs 3 channels too: detectors take RGB images only.
        albedo = out.attrs.get("albedo", torch.full((3,), GREY, device=shade.device))
        color = albedo * shade * out.mask
    images = (color.detach().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    images = fill_holes(images, out.tri_id.cpu().numpy(), scan.vertices, scan.faces,
                        cameras.camera_positions())
    if scan.has_texture or scan.vertex_colors is not None:
        images = normalise_colours(images, out.mask[..., 0].detach().cpu().numpy() > 0.5)
    return images, out


def _usable_views(cameras: OrbitCameras, names: tuple[str, ...]) -> np.ndarray:
    """(B,K) bool: face points from front-ish views only; ears from any view."""
    az, el = np.radians(cameras.azimuths), np.radians(cameras.elevations_per_view)
    frontal = np.cos(az) * np.cos(el) >= np.cos(np.radians(FRONTAL_RANGE_DEG)) - 1e-9
    defs = landmark_definitions()
    ears = np.array([n in defs.names and defs.group_of(n) == "ears" for n in names])
    return frontal[:, None] | ears[None, :]


def detect_points(scan_canonical: Scan, cameras: OrbitCameras, detector: LandmarkDetector,
                  query: MeshQuery, device: str = "cpu") -> FusedLandmarks:
    """The detector's own points (``detector.point_names``) fused on a canonical-frame scan.

    Renders every view, detects, lifts each view's points through its triangle buffer and
    fuses them over the views (``lifting.fuse_views``); ``query`` indexes the same scan.
    """
    images, out = render_for_detection(scan_canonical, cameras, device=device)
    detections = detector.detect(images)
    verts, faces = scan_canonical.vertices, scan_canonical.faces
    names = detector.point_names
    pixels, depths = cameras.project(verts)
    hits = lift_views(detections, out.tri_id.cpu().numpy(), pixels, depths,
                      cameras.camera_positions(), verts, faces, names)
    return fuse_views(hits, _usable_views(cameras, names), query, CANONICAL_EXTENT)


def map_points(fused: FusedLandmarks, table: IndexTable, query: MeshQuery) -> FusedLandmarks:
    """Detector points fused in 3D -> the table's landmarks, snapped onto the surface.

    A landmark's confidence is the mean of its points' confidences, weighted by |weight|, and
    its ``num_views`` the fewest views any of its points had; it is unplaced (face -1) where
    any of its points is.
    """
    points = table.apply(fused.points)
    w = np.abs(table.matrix)
    confidence = (w @ fused.confidence) / np.maximum(w.sum(1), 1e-12)
    placed = np.isfinite(points).all(1)
    face = np.full(len(points), -1, np.int64)
    bary = np.tile(np.array([1.0, 0.0, 0.0]), (len(points), 1))
    if placed.any():
        snap = query.closest(points[placed])
        face[placed], bary[placed], points[placed] = snap.face, snap.bary, snap.points
    confidence[~placed] = 0.0
    num_views = np.where(w > 0, fused.num_views[None, :], np.iinfo(np.int64).max).min(1)
    num_views[~placed] = 0
    return FusedLandmarks(face, bary, points, confidence, num_views)


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
    textured = scan.has_texture or scan.vertex_colors is not None
    lms = _detect_in_frame(scan, sim, cameras, detector, textured, device)
    closer = head_frame(lms.points[:NUM_IBUG], sim)
    if closer is not None:
        again = _detect_in_frame(scan, closer, cameras, detector, textured, device)
        if (again.face[:NUM_IBUG] >= 0).sum() >= (lms.face[:NUM_IBUG] >= 0).sum():
            lms = again
    enabled = lms.face >= 0
    enabled[NUM_IBUG:] &= lms.confidence[NUM_IBUG:] > 0.2
    return LandmarkSet(names=detector.table.names, num_faces=len(scan.faces), face_idx=lms.face,
                       bary=lms.bary, confidence=lms.confidence, enabled=enabled)


def table_for(detector: LandmarkDetector, points: np.ndarray, textured: bool) -> IndexTable:
    """The detector's table for its fused ``points`` (P,3): its own, or the one for shaded
    grey renders (``untextured_table``) where the scan has no colours; with the lip rows of
    its ``open_mouth_table`` where its ``mouth_open(points)`` says the mouth is open."""
    table = detector.table
    if not textured:
        table = getattr(detector, "untextured_table", None) or table
    mouth_open = getattr(detector, "mouth_open", None)
    if mouth_open is not None and mouth_open(points):
        table = table.with_rows(detector.open_mouth_table,
                                landmark_definitions().indices("lips"))
    return table


def _detect_in_frame(scan: Scan, sim: Similarity, cameras: OrbitCameras,
                     detector: LandmarkDetector, textured: bool,
                     device: str) -> FusedLandmarks:
    """The landmarks detected on ``scan`` seen in the frame ``sim``; points in it.

    A scan with colours is detected twice, as it looks and shaded grey, and the two are
    combined (``combine_detections``): its colours can mislead the detector (a tint, baked
    light, a grey texture) where its shape does not, and its shape alone can where its
    colours do not (brows, the lips' edge).
    """
    canon = scan.transformed(sim)
    query = MeshQuery(canon.vertices, canon.faces)
    fused = detect_points(canon, cameras, detector, query, device=device)
    found = map_points(fused, table_for(detector, fused.points, textured), query)
    if not textured:
        return found
    grey = Scan(vertices=canon.vertices, faces=canon.faces)
    fused = detect_points(grey, cameras, detector, query, device=device)
    shaded = map_points(fused, table_for(detector, fused.points, False), query)
    mouth_open = getattr(detector, "mouth_open", None)
    if mouth_open is not None and mouth_open(fused.points):
        # The open-mouth lip rows were fitted on renders as they look; on shaded grey ones
        # they place the lips worse (tuning and scored expression heads, CPU: median lip
        # error 0.61-0.74% of head height against 0.43-0.45%), so those come from the render
        # as it looks alone.
        face = shaded.face.copy()
        face[landmark_definitions().indices("lips")] = -1
        shaded = dataclasses.replace(shaded, face=face)
    return combine_detections(found, shaded, query)


def combine_detections(a: FusedLandmarks, b: FusedLandmarks, query: MeshQuery
                       ) -> FusedLandmarks:
    """Two detections of the same landmarks on one surface as one: where both placed a
    landmark, the mean of their points weighted by their confidences (the views' agreement),
    snapped onto the surface, with the same mean of the confidences; elsewhere the one that
    placed it.

    Measured on the tuning heads (CPU, 12 heads of base, rotation, shape, expression,
    lighting, grayscale, appearance_mix and wild_mix; % of head height, as rendered -> shaded
    grey -> combined): median landmark error 0.55 -> 0.48 -> 0.45, mean 1.02 -> 0.80 -> 0.77;
    the combination beat the render as it looks on 11 of the 12 (benchmarks/RESULTS.md).
    """
    both = (a.face >= 0) & (b.face >= 0)
    wa, wb = a.confidence[both, None], b.confidence[both, None]
    total = np.maximum(wa + wb, 1e-12)
    even = (wa + wb) <= 0  # neither view set agreed at all: the plain mean
    wa, wb = np.where(even, 0.5, wa / total), np.where(even, 0.5, wb / total)
    face = np.where(a.face >= 0, a.face, b.face)
    bary = np.where((a.face >= 0)[:, None], a.bary, b.bary)
    points = np.where((a.face >= 0)[:, None], a.points, b.points)
    confidence = np.where(a.face >= 0, a.confidence, b.confidence)
    num_views = np.where(a.face >= 0, a.num_views, b.num_views)
    if both.any():
        snap = query.closest(wa * a.points[both] + wb * b.points[both])
        face[both], bary[both], points[both] = snap.face, snap.bary, snap.points
        confidence[both] = (wa * a.confidence[both, None] + wb * b.confidence[both, None])[:, 0]
        num_views[both] = np.maximum(a.num_views[both], b.num_views[both])
    return FusedLandmarks(face, bary, points, confidence, num_views)


def head_frame(points: np.ndarray, sim: Similarity) -> Similarity | None:
    """A frame closed in on the head, where the face is small in the frame ``sim``.

    ``points`` (68,3) are the iBUG landmarks found in ``sim``'s canonical frame (NaN where
    not placed). Where FLAME's head about them (``HEAD_EXTENT_PER_RMS``) spans less than
    ``ZOOM_BELOW`` of the canonical extent, returns ``sim`` followed by the scaling that
    centres that head and makes it span the canonical extent (same turn); else None (the
    head already fills the views, or too few landmarks say where it is).
    """
    placed = points[np.isfinite(points).all(1)]
    if len(placed) < NUM_IBUG // 3:
        return None
    centroid = placed.mean(0)
    rms = float(np.sqrt(((placed - centroid) ** 2).sum(1).mean()))
    extent = HEAD_EXTENT_PER_RMS * rms
    if not 0 < extent < ZOOM_BELOW * CANONICAL_EXTENT:
        return None
    k = CANONICAL_EXTENT / extent
    centre = centroid + HEAD_CENTRE_PER_RMS * rms
    return Similarity(k * sim.scale, sim.rotation, k * (sim.translation - centre))
