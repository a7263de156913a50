"""Appearance conditions: the scan's texture changed so the one real face we have stops being
the only face the benchmark sees.

Each condition is ``(head, rng) -> head``; geometry and truth are untouched. The changed
texture is both the scan's texture and ``texture_truth`` (what a texture bake should recover).
A head without texture stays as it is.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from scipy.interpolate import griddata

from reflame_core.io.mesh import vertex_normals
from reflame_core.synthetic.head import SyntheticHead
from reflame_core.synthetic.truth import canonical_vertices

# Strengths, chosen wide enough to span pale to dark skin, flat to punchy photos, and
# tints no real skin has (the detector must not depend on this one face's colours).
BRIGHTNESS = (0.35, 1.6)  # multiplies every channel
CONTRAST = (0.4, 1.8)  # scales deviations from the mean grey level
HUE_SHIFT_DEG = 60.0  # hue rotated by up to this, either way
SATURATION = (0.0, 2.0)  # multiplies saturation
AMBIENT = (0.05, 0.3)
# Low-resolution texture: the texture's detail limited to this many texels across.
LOW_RES_TEXELS = (64, 256)  # baked lighting: light that reaches surfaces facing away
# Baked lighting computes normals on a coarser texel grid, then resizes: shading is smooth.
NORMAL_GRID = 256


def with_texture(head: SyntheticHead, texture: np.ndarray) -> SyntheticHead:
    """The head with ``texture`` (H,W,3) uint8 as its scan texture and texture truth."""
    tex = np.ascontiguousarray(texture, np.uint8)
    return replace(head, scan=replace(head.scan, texture=tex), texture_truth=tex)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def brightness(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Every channel times a factor in ``BRIGHTNESS`` (clipped at white)."""
    if not head.scan.has_texture:
        return head
    return with_texture(head, _to_u8(head.scan.texture * rng.uniform(*BRIGHTNESS)))


def contrast(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Deviations from the texture's mean level scaled by a factor in ``CONTRAST``."""
    if not head.scan.has_texture:
        return head
    t = head.scan.texture.astype(np.float64)
    mean = t.mean()
    return with_texture(head, _to_u8(mean + (t - mean) * rng.uniform(*CONTRAST)))


def hue_saturation(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Hue rotated by up to ``HUE_SHIFT_DEG`` and saturation scaled by ``SATURATION``."""
    if not head.scan.has_texture:
        return head
    hsv = cv2.cvtColor(head.scan.texture, cv2.COLOR_RGB2HSV).astype(np.float64)
    # OpenCV's 8-bit hue runs 0..180 for 0..360 degrees.
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-HUE_SHIFT_DEG, HUE_SHIFT_DEG) / 2) % 180
    hsv[..., 1] = hsv[..., 1] * rng.uniform(*SATURATION)
    hsv = np.clip(np.rint(hsv), 0, [179, 255, 255]).astype(np.uint8)
    return with_texture(head, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def grayscale(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Luminance only, in all three channels (an untextured-colour scanner)."""
    if not head.scan.has_texture:
        return head
    gray = cv2.cvtColor(head.scan.texture, cv2.COLOR_RGB2GRAY)
    return with_texture(head, np.repeat(gray[..., None], 3, axis=2))


def low_res(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """A blurry scanner texture: resampled down to ``LOW_RES_TEXELS`` across and back up, so
    pores, lashes and brow hair of this one face are gone."""
    if not head.scan.has_texture:
        return head
    tex = head.scan.texture
    h, w = tex.shape[:2]
    size = int(rng.integers(*LOW_RES_TEXELS, endpoint=True))
    small = cv2.resize(tex, (size, size * h // w), interpolation=cv2.INTER_AREA)
    return with_texture(head, cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def texel_normals(head: SyntheticHead, size: int) -> np.ndarray:
    """(size,size,3) unit template-frame surface normals per texel of the scan's UV layout
    (row 0 = v=1, as textures are stored); texels no UV triangle covers get the nearest.

    Normals are interpolated linearly between the UV points of the scan's vertices, so where
    two UV charts meet the gap between them is filled across; shading there is approximate,
    which is all lighting needs.
    """
    s = head.scan
    normals = vertex_normals(canonical_vertices(head), s.faces)
    per_uv = np.zeros((len(s.uv), 3))
    per_uv[s.uv_faces.ravel()] = normals[s.faces.ravel()]
    centres = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(centres, 1 - centres)
    grid = np.stack([u, v], -1).reshape(-1, 2)
    out = griddata(s.uv, per_uv, grid, method="linear")
    holes = np.isnan(out[:, 0])
    out[holes] = griddata(s.uv, per_uv, grid[holes], method="nearest")
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.reshape(size, size, 3)


def bake_lighting(head: SyntheticHead, direction: np.ndarray, ambient: float) -> SyntheticHead:
    """Diffuse shading from a light along ``direction`` (3,) (template frame, towards the
    light) multiplied into the texture: ``ambient + (1 - ambient) * max(n . l, 0)``."""
    if not head.scan.has_texture:
        return head
    n = texel_normals(head, NORMAL_GRID)
    light = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    shade = ambient + (1 - ambient) * np.clip(n @ light, 0, None)
    h, w = head.scan.texture.shape[:2]
    shade = cv2.resize(shade.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return with_texture(head, _to_u8(head.scan.texture * shade[..., None]))


def lighting(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Baked directional light from the front half-space: azimuth up to 75 degrees either
    side, elevation -30 to 60 degrees (template frame: +z faces forward, +y up)."""
    az, el = np.deg2rad(rng.uniform(-75, 75)), np.deg2rad(rng.uniform(-30, 60))
    direction = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    return bake_lighting(head, direction, rng.uniform(*AMBIENT))


def no_texture(head: SyntheticHead, rng: np.random.Generator) -> SyntheticHead:
    """Geometry only: no texture, no UVs, no vertex colours (a bare mesh)."""
    return replace(head, scan=replace(head.scan, texture=None, uv=None, uv_faces=None,
                                      vertex_colors=None))
