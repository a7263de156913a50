"""Landmarks read off a FLAME fit: where the fitted head's own landmarks land on the scan.

A detector reads each view's silhouette for the jaw line, and that moves with the head's
shape and pose (on the benchmark world about 40% of the detected contour landmarks are more
than 2% of head height off). A fit of FLAME to the scan's whole surface, seeded by those
detections and discounting the ones the surface contradicts, puts FLAME's own landmarks
within 2% (`benchmarks/RESULTS.md`). ``landmarks_from_fit`` runs that fit
(geometry stages of a preset, no texture) and moves the 68 iBUG landmarks to where it put
them; the extras (eye centres, ears) stay as detected.
"""

from __future__ import annotations

import numpy as np

from reflame_core.fit.config import FitConfig
from reflame_core.fit.setup import FitInputs, FlameAssets, make_session
from reflame_core.geometry.similarity import Similarity
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.io.mesh import Scan
from reflame_core.landmarks.definitions import NUM_IBUG
from reflame_core.landmarks.landmark_set import UNPLACED, LandmarkSet

# Only the geometry matters here: no eyeballs, no texture.
GEOMETRY_ONLY = ("stages.eyeballs.enabled=false", "stages.texture.enabled=false")
# A fitted landmark farther than this from the scan (fraction of the scan's largest side) is
# where the scan has no surface (cut away, a hole): it is left unplaced, not pulled onto
# whatever surface is nearest.
MAX_OFF_SCAN = 0.02


def landmarks_from_fit(
    scan: Scan,
    landmarks: LandmarkSet,
    flame: FlameAssets,
    *,
    to_canonical: Similarity | None = None,
    config: FitConfig | None = None,
    device: str = "cpu",
) -> LandmarkSet:
    """``landmarks`` (detected on ``scan``) with the 68 iBUG ones moved to where a FLAME fit
    of ``scan`` puts them, on the scan's surface.

    Args:
        scan: the scan, in its own frame.
        landmarks: detected landmarks on ``scan`` (they seed and steer the fit).
        flame: FLAME template and landmark embedding.
        to_canonical: the scan's frame (as ``load_inputs`` found it); None: the config's axes.
        config: the fit's settings; default the "fast" preset (its geometry stages took 19 s
            for a 20k-vertex scan on 2 CPU cores). Its eyeball and texture stages are off.
        device: "cpu" or "cuda".

    Returns:
        A new ``LandmarkSet`` (provenance "detected": it is an automatic placement, and what
        "reset" returns to); the extras keep their detection. The 68's confidence is
        ``1 - d / reach``, d the fitted landmark's distance to the scan and reach
        ``MAX_OFF_SCAN`` of the scan's size; a landmark farther than that (the fit over a
        hole or a cut) is unplaced and disabled.
    """
    config = (config or FitConfig.preset("fast")).with_overrides(list(GEOMETRY_ONLY))
    session = make_session(
        FitInputs(scan, flame.template, flame.embedding, landmarks, to_canonical), config,
        device=device,
    )
    session.run()
    hits = MeshQuery(scan.vertices, scan.faces).closest(session.landmarks_in_scan_frame())
    reach = MAX_OFF_SCAN * float(scan.extent.max())
    on_scan = hits.distance <= reach
    face_idx = landmarks.face_idx.copy()
    bary = landmarks.bary.copy()
    face_idx[:NUM_IBUG] = np.where(on_scan, hits.face, UNPLACED)
    bary[:NUM_IBUG] = hits.bary / hits.bary.sum(1, keepdims=True)
    enabled = landmarks.enabled.copy()
    enabled[:NUM_IBUG] = on_scan
    # How far the fitted surface is from the scan there: a landmark on a well-fitted patch is
    # sure; one where the fit floats off the scan (hair, a hole's rim) less so. (The
    # detector's confidence would flag exactly the jaw line that the fit has put right.)
    confidence = landmarks.confidence.copy()
    confidence[:NUM_IBUG] = np.clip(1.0 - hits.distance / reach, 0.0, 1.0)
    return LandmarkSet(
        names=landmarks.names, num_faces=landmarks.num_faces, face_idx=face_idx,
        bary=bary.astype(np.float64), confidence=confidence, enabled=enabled,
        weight=landmarks.weight.copy(), group_weights=dict(landmarks.group_weights),
    )
