"""Texture images of any common pixel format as (H,W,3) uint8 RGB.

Pillow's ``convert("RGB")`` clips 16-bit and 32-bit grey values to 255 (a 16-bit greyscale
texture turns pure white) and float images likewise; here every format is scaled by its own
range first.
"""

from __future__ import annotations

import warnings

import numpy as np

# Largest image read, pixels: 32768² (3 GiB as RGB). Pillow refuses images past about 13400²
# as a guard against decompression bombs, but 16K photogrammetry textures are common and a
# scan's texture is the user's own file.
MAX_TEXTURE_PIXELS = 1 << 30

# Pillow modes holding one high-range channel, and the full-scale value of each.
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def to_rgb8(image) -> np.ndarray:
    """(H,W,3) uint8 RGB of a PIL image, row 0 = top.

    8-bit modes (L, LA, P, RGB, RGBA, CMYK, ...) go through Pillow (alpha is dropped: a scan
    texture's alpha is coverage, not colour). 16-bit grey is scaled by 65535; 32-bit integer
    grey by 65535 when its values exceed 255 (Pillow's widening of 16-bit PNGs) else as 8-bit;
    float grey by 1 when its values lie in [0,1], else clipped to 0..255.
    """
    mode = image.mode
    if mode in _WIDE_MODES or mode in ("I", "F"):
        grey = np.asarray(image, dtype=np.float64)
        finite = grey[np.isfinite(grey)]
        top = float(finite.max()) if finite.size else 0.0
        if mode in _WIDE_MODES:
            scale = 255.0 / _WIDE_MODES[mode]
        elif mode == "I":
            scale = 255.0 / 65535.0 if top > 255 else 1.0
        else:
            scale = 255.0 if top <= 1.0 else 1.0
        grey = np.nan_to_num(grey, nan=0.0, posinf=top, neginf=0.0)
        g8 = np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)
        return np.repeat(g8[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"), np.uint8).copy()


def downscaled(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H,W,C) scaled down (area-averaged) to at most ``max_side`` pixels a side,
    aspect kept; ``image`` itself where it already fits."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    import cv2

    scale = max_side / max(h, w)
    return cv2.resize(np.ascontiguousarray(image),
                      (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def allow_large_images() -> None:
    """Let Pillow (and trimesh through it) open images of up to ``MAX_TEXTURE_PIXELS``;
    larger ones raise ``PIL.Image.DecompressionBombError``."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_TEXTURE_PIXELS // 2  # Pillow raises past twice this
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
