"""Look at a fit: the scan, the registered mesh and the two together, from the front, the
side and below, as one PNG.

    python tools/compare_views.py SCAN FIT.obj --out compare.png [--up +y --front +z]

``FIT.obj`` is the registered mesh ``reflame fit`` writes (scan frame and units). Columns:
the scan (grey), the fit (orange), and the two depth-composited (whichever surface is nearer
the camera shows): where orange shows through the grey, the fit lies outside the scan; a fit
that matches the scan shows as fine mottling. Rows: front, right side, below (60 degrees).
Rendering is the project's own (CPU rasterizer, no GPU or screen needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reflame_core.geometry.frame import canonical_frame
from reflame_core.io.mesh import vertex_normals
from reflame_core.io.scan import load_scan
from reflame_core.render.cameras import OrbitCameras
from reflame_core.render.renderer import MeshRenderer

SCAN_RGB = np.array([0.78, 0.78, 0.78])
FIT_RGB = np.array([0.95, 0.55, 0.2])
# (azimuth, elevation) in degrees of the rows.
VIEWS = {"front": (0.0, 0.0), "side": (90.0, 0.0), "below": (0.0, -60.0)}


def _camera(azimuth: float, elevation: float, resolution: int) -> OrbitCameras:
    # Two views at +-azimuth: view 1 sits at +azimuth (a single view always sits at 0).
    return OrbitCameras(num_views=2, azimuth_range=max(abs(azimuth), 1e-3),
                        elevations=(elevation,), resolution=resolution, distance=6.0)


def shaded(vertices: np.ndarray, faces: np.ndarray, cameras: OrbitCameras
           ) -> tuple[np.ndarray, np.ndarray]:
    """Headlight-shaded grey (H,W) in 0..1 and camera depth (H,W) (inf where empty) of a
    canonical-frame mesh seen from view 1 of ``cameras``."""
    normals = vertex_normals(vertices, faces)
    out = MeshRenderer(cameras, backend="torch").render(
        torch.as_tensor(vertices, dtype=torch.float32), faces,
        attrs={"normal": torch.as_tensor(normals, dtype=torch.float32)}, views=[1])
    n = torch.nn.functional.normalize(out.attrs["normal"][0], dim=-1).numpy()
    to_camera = cameras.camera_positions()[1] / np.linalg.norm(cameras.camera_positions()[1])
    light = np.clip(np.abs(n @ to_camera), 0.0, 1.0)
    covered = out.mask[0, ..., 0].numpy() > 0.5
    depth = np.where(covered, out.depth[0, ..., 0].numpy(), np.inf)
    return np.where(covered, 0.25 + 0.75 * light, 1.0), depth


def compare_image(scan_vertices: np.ndarray, scan_faces: np.ndarray, fit_vertices: np.ndarray,
                  fit_faces: np.ndarray, resolution: int = 320) -> np.ndarray:
    """(3R, 3R, 3) uint8: rows front/side/below, columns scan / fit / both."""
    rows = []
    for azimuth, elevation in VIEWS.values():
        cams = _camera(azimuth, elevation, resolution)
        scan_light, scan_depth = shaded(scan_vertices, scan_faces, cams)
        fit_light, fit_depth = shaded(fit_vertices, fit_faces, cams)
        scan_rgb = np.where(np.isfinite(scan_depth)[..., None],
                            scan_light[..., None] * SCAN_RGB, 1.0)
        fit_rgb = np.where(np.isfinite(fit_depth)[..., None], fit_light[..., None] * FIT_RGB, 1.0)
        both = np.where((fit_depth < scan_depth)[..., None], fit_rgb, scan_rgb)
        rows.append(np.concatenate([scan_rgb, fit_rgb, both], axis=1))
    return (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scan", type=Path)
    ap.add_argument("fit", type=Path, help="the registered mesh (scan frame)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--up", default="+y")
    ap.add_argument("--front", default="+z")
    ap.add_argument("--resolution", type=int, default=320)
    a = ap.parse_args(argv)
    scan, fit = load_scan(a.scan), load_scan(a.fit)
    # One frame for both: the scan's, so the fit is seen where it lies on the scan.
    sim = canonical_frame(scan.vertices, up=a.up, front=a.front)
    image = compare_image(sim.apply(scan.vertices), scan.faces, sim.apply(fit.vertices),
                          fit.faces, a.resolution)
    Image.fromarray(image).save(a.out)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
