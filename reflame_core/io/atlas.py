"""Several texture images of one scan packed into one, with the UVs moved to match.

Photogrammetry tools (Metashape, RealityCapture) often export a head as several texture
atlases, one material each. The renderer and the texture bake read one image, so the
loader packs them: each image in its own cell of a grid, its edge pixels repeated into a
border so that filtering at a cell's rim does not pick up the next image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Largest side of a packed texture, pixels: enough for a 1024² FLAME texture of the face,
# and a bound on memory (8192² RGB is 192 MiB).
MAX_SIDE = 8192
# Pixels of each cell's edge repeated around it (bilinear and mipmap filtering reach over).
BORDER = 8
# Colour of the cell for faces whose material has no texture (neutral grey, as an untextured
# scan renders).
PLAIN = 128


@dataclass
class PackedTexture:
    """One texture for a scan that had several.

    Attributes:
        texture: (H,W,3) uint8, row 0 = top.
        uv: (3F,2) float32 per-corner texture coordinates, OBJ convention (v up).
        uv_faces: (F,3) int64 indices into ``uv``.
        cell_size: (width, height) pixels each source image was scaled to.
    """

    texture: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    cell_size: tuple[int, int]


def _fit_cells(sizes: list[tuple[int, int]], count: int, max_side: int
               ) -> tuple[int, int, int, int]:
    """(columns, rows, cell width, cell height): a near-square grid of ``count`` cells, each
    as large as the largest image (W,H) but all within ``max_side`` with their borders."""
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    width = max(w for w, _ in sizes)
    height = max(h for _, h in sizes)
    scale = min(1.0, (max_side / cols - 2 * BORDER) / width,
                (max_side / rows - 2 * BORDER) / height)
    return cols, rows, max(1, int(width * scale)), max(1, int(height * scale))


def pack_textures(
    images: list[Callable[[], np.ndarray]],
    sizes: list[tuple[int, int]],
    uv: np.ndarray,
    uv_faces: np.ndarray,
    face_image: np.ndarray,
    max_side: int = MAX_SIDE,
) -> PackedTexture:
    """Pack the images into one texture and move each face's UVs into its image's cell.

    Args:
        images: one loader per source image, returning (H,W,3) uint8 (called once each, in
            turn, so that only one full-size image is in memory at a time).
        sizes: (width, height) of each image.
        uv: (T,2) texture coordinates, OBJ convention; a face whose coordinates lie outside
            [0,1] (a repeating texture) is moved back by whole tiles.
        uv_faces: (F,3) indices into ``uv``.
        face_image: (F,) index into ``images`` of each face's image, -1 for a face whose
            material has no texture (it gets a plain grey cell).
        max_side: largest side of the packed texture, pixels.
    """
    import cv2

    plain = bool((face_image < 0).any())
    count = len(images) + plain
    cols, rows, cw, ch = _fit_cells(sizes, count, max_side)
    pitch_w, pitch_h = cw + 2 * BORDER, ch + 2 * BORDER
    atlas = np.full((rows * pitch_h, cols * pitch_w, 3), PLAIN, np.uint8)
    for i, load in enumerate(images):
        cell = cv2.resize(load(), (cw, ch), interpolation=cv2.INTER_AREA)
        cell = cv2.copyMakeBorder(cell, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_REPLICATE)
        r, c = divmod(i, cols)
        atlas[r * pitch_h : (r + 1) * pitch_h, c * pitch_w : (c + 1) * pitch_w] = cell

    corners = uv[uv_faces].astype(np.float64)  # (F,3,2)
    # A repeating texture: bring each face back to the [0,1] tile it starts in.
    outside = (corners.min(1) < 0) | (corners.max(1) > 1)
    corners -= np.where(outside, np.floor(corners.min(1)), 0.0)[:, None, :]
    corners = np.clip(corners, 0.0, 1.0)
    cell = np.where(face_image < 0, len(images), face_image)
    r, c = np.divmod(cell, cols)
    x = c[:, None] * pitch_w + BORDER + corners[..., 0] * cw
    y = r[:, None] * pitch_h + BORDER + (1.0 - corners[..., 1]) * ch
    h, w = atlas.shape[:2]
    new_uv = np.stack([x / w, 1.0 - y / h], axis=-1).reshape(-1, 2).astype(np.float32)
    return PackedTexture(atlas, new_uv, np.arange(3 * len(uv_faces)).reshape(-1, 3),
                         (cw, ch))
