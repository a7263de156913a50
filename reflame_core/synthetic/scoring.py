"""Errors against a synthetic head's truth, and their summaries, shared by the benchmarks.

Every error is a distance in the scan's frame divided by ``truth.head_height`` (so units do
not matter). Truth cut away from the scan (``vertex_present`` / ``landmark_present`` False)
is NaN in the landmark errors, i.e. not scored; a landmark the detector did not place is
scored as a miss of ``NOT_PLACED`` (a whole head height: finite, so percentiles and JSON stay
well defined).
"""

from __future__ import annotations

import numpy as np

from reflame_core.fit.regions import REGIONS
from reflame_core.synthetic.head import SyntheticHead
from reflame_core.synthetic.truth import head_height

# iBUG-68 groups, index ranges.
GROUPS = {"contour": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36),
          "eyes": slice(36, 48), "lips": slice(48, 68)}
# A landmark "hits" when it is within this fraction of head height of the truth.
HIT = 0.02
NOT_PLACED = 1.0


def landmark_errors(head: SyntheticHead, positions: np.ndarray) -> np.ndarray:
    """(68,) relative errors of detected ``positions`` (68,3) (scan frame, NaN rows where a
    landmark was not placed); NaN where the true landmark is not on the scan, ``NOT_PLACED``
    where it is but none was placed."""
    e = np.linalg.norm(np.asarray(positions, np.float64) - head.true_landmarks, axis=1)
    e = np.where(np.isnan(e), NOT_PLACED, e / head_height(head))
    return np.where(head.landmark_present, e, np.nan)


def vertex_errors(head: SyntheticHead, vertices: np.ndarray) -> np.ndarray:
    """(5023,) relative errors of fitted FLAME ``vertices`` (5023,3) in the scan frame, for
    every vertex (``head.vertex_present`` says which are still on the scan)."""
    return np.linalg.norm(np.asarray(vertices, np.float64) - head.true_vertices,
                          axis=1) / head_height(head)


def _stats(e: np.ndarray) -> dict:
    """Hit rate, median and p90 of the scored (non-NaN) errors."""
    e = e[~np.isnan(e)]
    if not e.size:
        return {"scored": 0}
    return {"scored": int(e.size), "within_2pct": round(float(np.mean(e < HIT)), 4),
            "median": round(float(np.median(e)), 5),
            "p90": round(float(np.percentile(e, 90)), 5)}


def summarize_landmarks(errors: np.ndarray) -> dict:
    """Summary of landmark errors (N,68) over N heads: overall and per group."""
    e = np.asarray(errors, np.float64).reshape(-1, 68)
    return {**_stats(e.ravel()),
            "not_placed": int((e == NOT_PLACED).sum()),
            "groups": {g: _stats(e[:, s].ravel()) for g, s in GROUPS.items()}}


def summarize_vertices(errors: np.ndarray, present: np.ndarray, labels: np.ndarray) -> dict:
    """Summary of fit errors (N,5023) over N heads, with ``present`` (N,5023) the truth masks
    and ``labels`` (5023,) ``fit/regions.py`` region indices: mean and p95 on the scan, per
    region group (face; eyeballs; scalp, ears and neck), and for cut-away vertices (where the
    fit can only extrapolate)."""
    e = np.asarray(errors, np.float64).reshape(-1, len(labels))
    present = np.asarray(present, bool).reshape(e.shape)
    labels = np.broadcast_to(np.asarray(labels), e.shape)

    def stats(mask: np.ndarray) -> dict:
        x = e[mask]
        if not x.size:
            return {"vertices": 0}
        return {"vertices": int(x.size), "mean": round(float(x.mean()), 5),
                "p95": round(float(np.percentile(x, 95)), 5)}

    def region(*names: str) -> np.ndarray:
        return np.isin(labels, [REGIONS.index(n) for n in names])

    return {**stats(present), "face": stats(present & region("face")),
            "eyeballs": stats(present & region("eyeballs")),
            "scalp_ears_neck": stats(present & region("scalp", "ears", "neck")),
            "cut_away": stats(~present)}
