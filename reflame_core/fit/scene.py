"""What a fit looks at, computed in one place for the CLI, the studio, the worker and batch:
the scan's canonical frame and the orbit cameras, both from a ``FitConfig``."""

from __future__ import annotations

from reflame_core.fit.config import FitConfig
from reflame_core.geometry.frame import canonical_frame
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan
from reflame_core.render.cameras import OrbitCameras


def scan_to_canonical(scan: Scan, config: FitConfig) -> Similarity:
    """Scan frame -> canonical fitting frame (+y up, face towards +z, unit-ish size), from
    the config's ``frame.up`` / ``frame.front`` axes."""
    frame = config.data["frame"]
    return canonical_frame(scan.vertices, up=frame["up"], front=frame["front"])


def cameras_from_config(table: dict) -> OrbitCameras:
    """OrbitCameras from the ``[cameras]`` table of a FitConfig (every view enabled)."""
    return OrbitCameras(
        num_views=int(table["num_views"]),
        azimuth_range=float(table["azimuth_range"]),
        elevations=tuple(float(e) for e in table["elevations"]),
        distance=float(table["distance"]),
        fov_deg=float(table["fov_deg"]),
        resolution=int(table["resolution"]),
    )
