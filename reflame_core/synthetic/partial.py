"""Partial and imperfect scans: cuts, missing back, holes, a cap over the scalp, shoulders,
noise.

Each condition is ``(head, rng) -> head``. Cuts remove faces through ``truth.keep_faces``,
which marks the true vertices and landmarks no longer on the scan; added geometry (the cap,
the shoulders) and noise keep every true point on the surface. Positions are decided in the
template frame (+y up, +z forward), lengths as fractions of head height.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import trimesh

from reflame_core.fit.regions import LEFT_EYEBALL
from reflame_core.io.mesh import vertex_normals
from reflame_core.synthetic.conditions import rotation_matrix
from reflame_core.synthetic.head import SyntheticHead
from reflame_core.synthetic.truth import canonical_vertices, keep_faces, move_vertices

CHIN, BROWS = 8, slice(17, 27)  # iBUG indices
# Cap colours (RGB): dark brown, brown, blond, grey hair, a blue swim cap. Not black: the
# renders' background is black, and a black cap would read as missing geometry.
HAIR_COLOURS = np.array([[60, 40, 30], [110, 75, 50], [190, 160, 110], [150, 150, 150],
                         [40, 70, 160]])
# Shirt colours of a bust (RGB): white, navy, grey, dark red, green.
CLOTH_COLOURS = np.array([[230, 230, 225], [40, 50, 90], [120, 120, 125], [130, 30, 40],
                          [50, 110, 60]])


def _height(head: SyntheticHead) -> float:
    return float(np.ptp(head.deformed_vertices[:, 1]))


def _tilted(normal: np.ndarray, rng: np.random.Generator, max_deg: float) -> np.ndarray:
    return rotation_matrix(rng.normal(size=3), rng.uniform(-max_deg, max_deg)) @ normal


def cut_by_plane(head: SyntheticHead, point: np.ndarray, normal: np.ndarray) -> SyntheticHead:
    """Keep only faces with every vertex on the ``normal`` side of the plane through
    ``point`` (template frame, (3,) each)."""
    above = (canonical_vertices(head) - point) @ normal >= 0
    return keep_faces(head, above[head.scan.faces].all(1))


def cut_neck(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Cut from just below the chin (2% of head height) down to mid-neck (25%), the plane
    tilted up to 20 degrees: scans end wherever the operator stopped."""
    chin = head.to_canonical.apply(head.true_landmarks[CHIN])
    point = chin - np.array([0.0, rng.uniform(0.02, 0.25) * _height(head), 0.0])
    return cut_by_plane(head, point, _tilted(np.array([0.0, 1.0, 0.0]), rng, 20.0))


def no_back(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Missing back of the head: everything behind a plane 25-55% of the way from the back
    to the front (tilted up to 20 degrees) is gone, as from a front-only scanner."""
    z = canonical_vertices(head)[:, 2]
    point = np.array([0.0, 0.0, z.min() + rng.uniform(0.25, 0.55) * np.ptp(z)])
    return cut_by_plane(head, point, _tilted(np.array([0.0, 0.0, 1.0]), rng, 20.0))


def holes(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """3-7 round holes of radius 2-6% of head height, half of them centred in front (where
    scanners lose eyes, nostrils and the mouth's inside), the rest anywhere."""
    v = canonical_vertices(head)
    centroids = v[head.scan.faces].mean(1)
    n = int(rng.integers(3, 8))
    front = np.flatnonzero(v[:, 2] > np.median(v[:, 2]))
    centres = np.concatenate([v[rng.choice(front, n // 2 + n % 2, replace=False)],
                              v[rng.choice(len(v), n // 2, replace=False)]])
    radii = rng.uniform(0.02, 0.06, n) * _height(head)
    d = np.linalg.norm(centroids[:, None] - centres[None], axis=2)
    return keep_faces(head, ~(d < radii).any(1))


def scalp_cap(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """A cap over the scalp: extra geometry that hides the skin under it, as hair, a swim cap
    or a hat does. The scalp above a level 15-45% of the way from the brows to the crown is
    copied 1-3% of head height outward, as an open shell in one of ``HAIR_COLOURS`` (the
    texture's closest texel, where there is a texture). The head beneath is kept, so the
    truth is unchanged."""
    s = head.scan
    v = canonical_vertices(head)
    brow_y = head.to_canonical.apply(head.true_landmarks[BROWS])[:, 1].mean()
    level = brow_y + rng.uniform(0.15, 0.45) * (v[:, 1].max() - brow_y)
    cap_faces = s.faces[(v[s.faces][:, :, 1] > level).all(1)]
    used, local = np.unique(cap_faces, return_inverse=True)
    offset = rng.uniform(0.01, 0.03) * _height(head)
    shell = v[used] + offset * vertex_normals(v, s.faces)[used]
    colour = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    return _with_shell(head, shell, local.reshape(-1, 3), colour)


def shoulders(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """A bust: shoulders and a chest below the neck, as scanners of the upper body give.

    A half-ellipsoid (open at the bottom, where the scan was cut off) 1.2-1.6 head heights
    wide (FLAME's head height runs from the crown to the base of the neck), 0.6-0.8 deep and
    0.35-0.5 high rises 0-12% of head height above the lowest point of the neck, so the neck
    runs into it. The neck inside it is gone (a scan shows only the outer surface; those true
    points are not scored). It is skin-coloured (the texel under the base of the neck) or one
    of ``CLOTH_COLOURS``. Nothing in FLAME matches it, so the truth is unchanged.
    """
    v = canonical_vertices(head)
    height = _height(head)
    deformed = head.deformed_vertices[: LEFT_EYEBALL.start]
    bottom = deformed[:, 1].min()
    base = deformed[deformed[:, 1] < bottom + 0.05 * height].mean(0)
    radii = np.array([rng.uniform(0.6, 0.8), rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.4)])
    radii *= height
    centre = np.array([base[0], bottom + rng.uniform(0.0, 0.12) * height - radii[1],
                       base[2] + rng.uniform(-0.05, 0.05) * height])
    inside = (((v[head.scan.faces].mean(1) - centre) / radii) ** 2).sum(1) < 1.0
    head = keep_faces(head, ~inside)
    sphere = trimesh.creation.icosphere(subdivisions=4)
    points = np.asarray(sphere.vertices) * radii + centre
    faces = np.asarray(sphere.faces)
    faces = faces[points[faces][:, :, 1].mean(1) > centre[1] - 0.3 * radii[1]]
    used, local = np.unique(faces, return_inverse=True)
    if rng.random() < 0.5:
        neck = head.to_canonical.inverse().apply(base[None])[0]
        colour = _colour_at(head.scan, neck)
    else:
        colour = CLOTH_COLOURS[rng.integers(len(CLOTH_COLOURS))]
    return _with_shell(head, points[used], local.reshape(-1, 3), colour)


def stand(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """A plinth under the scan: ``on_a_stand`` 1-4 head heights tall, 0.7-1 wide, stone
    white or grey."""
    colour = CLOTH_COLOURS[rng.choice([0, 2])]
    return on_a_stand(head, rng.uniform(1.0, 4.0), rng.uniform(0.7, 1.0), colour)


def on_a_stand(head: SyntheticHead, heights: float, width: float = 0.9,
               colour: np.ndarray = CLOTH_COLOURS[0]) -> SyntheticHead:
    """The scan standing on a box ``heights`` head heights tall and ``width`` wide and deep
    (template frame: upright, centred under the scan's lowest point, 3072 faces), so that
    the head is a small part of the scan. Nothing in FLAME matches it: the truth is
    unchanged."""
    v = canonical_vertices(head)
    height = _height(head)
    box = trimesh.creation.box(extents=[width * height, heights * height, width * height])
    for _ in range(4):  # dense, as a scanned plinth is
        box = box.subdivide()
    lowest = v[np.argmin(v[:, 1])]
    points = np.asarray(box.vertices) + [lowest[0], v[:, 1].min() - heights * height / 2,
                                         lowest[2]]
    return _with_shell(head, points, np.asarray(box.faces), colour)


def _colour_at(scan, point: np.ndarray) -> np.ndarray:
    """(3,) RGB the scan shows at its vertex nearest ``point`` (3,) (scan frame): the texel
    under it, its vertex colour, or a mid grey."""
    nearest = int(np.argmin(np.linalg.norm(scan.vertices - point, axis=1)))
    if scan.has_texture:
        face, corner = np.argwhere(scan.faces == nearest)[0]
        u, t = scan.uv[scan.uv_faces[face, corner]]
        h, w = scan.texture.shape[:2]
        row = int(np.clip((1 - t) * h, 0, h - 1))
        return scan.texture[row, int(np.clip(u * w, 0, w - 1))].astype(np.int64)
    if scan.vertex_colors is not None:
        return scan.vertex_colors[nearest].astype(np.int64)
    return np.array([128, 128, 128])


def _with_shell(head: SyntheticHead, shell: np.ndarray, shell_faces: np.ndarray,
                colour: np.ndarray) -> SyntheticHead:
    """The head with geometry added to its scan: ``shell`` (N,3) vertices in the template
    frame and ``shell_faces`` (M,3) into them, coloured ``colour`` (3,) RGB (the texture's
    closest texel where there is a texture: one UV point, no new atlas). The truth is
    unchanged."""
    s = head.scan
    to_scan = head.to_canonical.inverse()
    vertices = np.concatenate([s.vertices, to_scan.apply(shell).astype(np.float32)])
    faces = np.concatenate([s.faces, len(s.vertices) + shell_faces])
    uv, uv_faces = s.uv, s.uv_faces
    if s.has_texture:
        dist = np.abs(s.texture.astype(np.int32) - colour).sum(2)
        row, col = np.unravel_index(np.argmin(dist), dist.shape)
        h, w = dist.shape
        texel = np.array([[(col + 0.5) / w, 1 - (row + 0.5) / h]], np.float32)
        uv = np.concatenate([s.uv, texel])
        uv_faces = np.concatenate([s.uv_faces, np.full((len(shell_faces), 3), len(s.uv))])
    elif uv is not None:
        uv, uv_faces = None, None  # UVs without a texture would be a half-kept layout
    colors = s.vertex_colors
    if colors is not None:
        added = np.repeat(np.asarray(colour, colors.dtype)[None], len(shell), 0)
        colors = np.concatenate([colors, added])
    scan = replace(s, vertices=vertices, faces=faces, uv=uv, uv_faces=uv_faces,
                   vertex_colors=colors, _normals=None)
    return replace(head, scan=scan)


def noise(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Scanner noise: every vertex moved by a Gaussian of 0.05-0.2% of head height per axis
    (0.1-0.5 mm on a real head). True points ride on their triangles; the deformed template
    (the shape a fit should find) does not move."""
    sigma = rng.uniform(0.0005, 0.002) * _height(head)
    v = canonical_vertices(head)
    return move_vertices(head, lambda p: p, moved=v + rng.normal(scale=sigma, size=v.shape))
