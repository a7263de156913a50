"""Moving a synthetic scan's geometry while its ground truth stays exact.

Every condition that moves scan vertices goes through ``move_vertices``: each true point that
is on the scan is carried by its triangle's barycentric coordinates, so it stays on the moved
surface to rounding, whatever the motion (linear or not). Points already cut away (not on
the scan) have no triangle; they follow the motion's own point map instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from reflame_core.geometry.similarity import Similarity
from reflame_core.geometry.surface_query import MeshQuery
from reflame_core.synthetic.head import SyntheticHead

PointMap = Callable[[np.ndarray], np.ndarray]


def head_height(head: SyntheticHead) -> float:
    """Head height in scan units: y extent of the true vertices in the template frame, divided
    by the scan-to-template scale. The one length every relative error is divided by."""
    return float(np.ptp(head.to_canonical.apply(head.true_vertices)[:, 1])
                 / head.to_canonical.scale)


def canonical_vertices(head: SyntheticHead) -> np.ndarray:
    """(V,3) float64 scan vertices in the template frame."""
    return head.to_canonical.apply(head.scan.vertices.astype(np.float64))


def move_vertices(
    head: SyntheticHead,
    canonical_map: PointMap,
    to_scan: Similarity | None = None,
    moved: np.ndarray | None = None,
) -> SyntheticHead:
    """The head with every template-frame point ``p`` moved to ``canonical_map(p)``.

    Args:
        head: the head to move.
        canonical_map: (N,3) -> (N,3) float64, a motion in the template frame (template
            units). Applied to the scan vertices and to ``deformed_vertices``; true points on
            the scan follow their triangles, cut-away ones follow the map.
        to_scan: the new template-to-scan similarity (pose and units); default the old one.
        moved: (V,3) the scan vertices' new template-frame positions when they are not
            ``canonical_map`` of the old ones (per-vertex noise); the map then moves only
            ``deformed_vertices`` and cut-away points.
    """
    to_scan = head.to_canonical.inverse() if to_scan is None else to_scan
    old_canon = canonical_vertices(head)
    moved = canonical_map(old_canon) if moved is None else moved
    new_scan = to_scan.apply(moved).astype(np.float32)
    query = MeshQuery(head.scan.vertices, head.scan.faces, centroids=64)

    def carry(points: np.ndarray, present: np.ndarray) -> np.ndarray:
        out = to_scan.apply(canonical_map(head.to_canonical.apply(points)))
        if present.any():
            hits = query.closest(points[present])
            bary = hits.bary.astype(np.float64)
            bary /= bary.sum(1, keepdims=True)
            tri = new_scan[head.scan.faces[hits.face]].astype(np.float64)
            out[present] = np.einsum("qk,qkd->qd", bary, tri)
        return out

    return replace(
        head,
        scan=replace(head.scan, vertices=new_scan, _normals=None),
        true_vertices=carry(head.true_vertices, head.vertex_present),
        true_landmarks=carry(head.true_landmarks, head.landmark_present),
        to_canonical=to_scan.inverse(),
        deformed_vertices=canonical_map(head.deformed_vertices),
    )


def keep_faces(head: SyntheticHead, keep: np.ndarray) -> SyntheticHead:
    """The head with only the faces where ``keep`` (F,) is True; unused vertices and UVs go.

    A true point stays present when it is still on what is left of the surface: within 5e-6
    of the head height, above the float32 query's own rounding (~3e-7 here) and far below any
    triangle's size, so only points on kept faces or on the cut's very edge stay.
    """
    scan = head.scan.with_faces(keep)
    query = MeshQuery(scan.vertices, scan.faces, centroids=64)
    tol = 5e-6 * head_height(head)

    def still_there(points: np.ndarray, present: np.ndarray) -> np.ndarray:
        return present & (query.closest(points).distance <= tol)

    return replace(
        head,
        scan=scan,
        vertex_present=still_there(head.true_vertices, head.vertex_present),
        landmark_present=still_there(head.true_landmarks, head.landmark_present),
    )
