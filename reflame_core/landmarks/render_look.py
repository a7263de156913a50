"""What the detector sees of a coloured scan: its render made to look like a photo of a face,
whatever the scan's colours (a tinted or over-saturated texture, baked light).

``normalise_colours`` turns a render's skin back towards a neutral skin tone and contrast: a
global hue turn or saturation change of the texture is undone by rotating and scaling the
chroma plane (CIE Lab) so the face's mean chroma lands on ``SKIN_AB``, and the lightness is
stretched to ``SKIN_L``. (Untextured scans are shaded instead: ``detect.render_for_detection``.)

``fill_holes`` paints over what a hole in the scan shows (the inside of the head's far side)
with the surface around it, as a detector expects of a face: scanners lose eyes, nostrils and
the mouth's inside, and a dark hole where an eye should be hides the face from the detector.
"""

from __future__ import annotations

import cv2
import numpy as np

from reflame_core.landmarks.lifting import facing_cosine

# Target face statistics in OpenCV's 8-bit Lab (L 0-255, a and b offset by 128): lightness
# 2nd/98th percentiles and mean chroma of a face lit from the front (typical skin: hue angle
# about 45-60 degrees, chroma about 20). Measured on renders of the facescape texture (tuning
# seeds 2001-2003, base scenario, views at 0 and ±30 degrees) and rounded.
SKIN_L = (11.0, 246.0)
SKIN_AB = (15.0, 15.3)
# A face whose mean chroma is below this (Lab units) is grey: its hue is noise, left alone.
MIN_CHROMA = 4.0


def normalise_colours(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Renders (B,H,W,3) uint8 RGB with their coverage masks (B,H,W) bool -> the same images
    with each one's covered pixels brought to neutral skin statistics (see the module doc);
    the background is untouched."""
    out = np.array(images, np.uint8, copy=True)
    for img, mask, res in zip(images, np.asarray(masks, bool), out, strict=True):
        if mask.sum() < 16:
            continue
        lab = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2LAB).astype(np.float32)
        px = lab[mask]
        lo, hi = np.percentile(px[:, 0], [2, 98])
        scale = (SKIN_L[1] - SKIN_L[0]) / max(hi - lo, 1.0)
        px[:, 0] = SKIN_L[0] + (px[:, 0] - lo) * scale
        ab = px[:, 1:] - 128.0
        mean = ab.mean(0)
        chroma = float(np.linalg.norm(mean))
        if chroma >= MIN_CHROMA:
            target = np.asarray(SKIN_AB, np.float32)
            turn = np.arctan2(target[1], target[0]) - np.arctan2(mean[1], mean[0])
            c, s = np.cos(turn), np.sin(turn)
            rot = np.array([[c, -s], [s, c]], np.float32)
            ab = (ab @ rot.T) * (float(np.linalg.norm(target)) / chroma)
        px[:, 1:] = ab + 128.0
        lab[mask] = np.clip(px, 0, 255)
        rgb = cv2.cvtColor(lab.astype(np.uint8), cv2.COLOR_LAB2RGB)
        res[mask] = rgb[mask]
    return out


# A view where more than this share of the covered pixels show faces from behind is not a
# scan with holes (faces wound every which way): it is left as it is.
MAX_HOLE_SHARE = 0.25


def fill_holes(images: np.ndarray, tri_id: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
               cam_positions: np.ndarray) -> np.ndarray:
    """Renders (B,H,W,3) uint8 with their holes painted over: the pixels that show a face
    from behind (the inside of the head) where the surface closes around them.

    Args:
        images: (B,H,W,3) uint8 RGB renders of the mesh ``vertices`` (V,3), ``faces`` (F,3)
            (wound outward) from cameras at ``cam_positions`` (B,3).
        tri_id: (B,H,W) int triangle buffer of those renders, -1 empty.
    Returns:
        (B,H,W,3) uint8: a copy with those pixels (and a pixel around them) filled from
        their surroundings (OpenCV's Telea inpainting); the rest unchanged.
    """
    v = np.asarray(vertices, np.float64)
    out = np.array(images, np.uint8, copy=True)
    ring = np.ones((3, 3), np.uint8)
    for b, (ids, cam) in enumerate(zip(tri_id, cam_positions, strict=True)):
        covered = ids >= 0
        # Only the triangles this view shows (a dense scan has millions it does not).
        seen, pixel_tri = np.unique(ids[covered], return_inverse=True)
        tri = v[faces[seen]]
        from_behind = facing_cosine(tri, tri.mean(1), cam) < 0
        behind = np.zeros(ids.shape, bool)
        behind[covered] = from_behind[pixel_tri]
        count = int(behind.sum())
        if count == 0 or count > MAX_HOLE_SHARE * covered.sum():
            continue
        # Holes only: patches the surface closes around. A rim seen from behind (the inside
        # of a cut neck from below) borders the background, and the scan ends there anyway.
        _, patch = cv2.connectedComponents(behind.astype(np.uint8), connectivity=8)
        rim = np.unique(patch[cv2.dilate((~covered).astype(np.uint8), ring) > 0])
        behind &= ~np.isin(patch, rim)
        if not behind.any():
            continue
        mask = cv2.dilate(behind.astype(np.uint8), ring)
        out[b] = cv2.inpaint(np.ascontiguousarray(out[b]), mask, 5, cv2.INPAINT_TELEA)
    return out
