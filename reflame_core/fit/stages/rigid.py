"""Similarity alignment of the template to the scan from 3D landmarks (Umeyama)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reflame_core.fit.landmark_outliers import factors_for
from reflame_core.fit.stages.base import FitStage
from reflame_core.geometry.similarity import Similarity

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

# Below this many usable landmarks a similarity is not determined well enough.
MIN_LANDMARKS = 4
# IRLS rounds of the robust similarity; it settles in a handful, this bounds the cost.
IRLS_ROUNDS = 20
# Stop once no landmark's robust factor moves by more than this between rounds.
IRLS_TOLERANCE = 1e-4


def umeyama(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True
) -> Similarity:
    """Least-squares similarity taking points ``src`` (N,3) onto ``dst`` (N,3).

    Umeyama (1991), with optional per-point weights (N,).
    """
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    rot = u @ sign @ vt
    var_s = (w * (xs**2).sum(1)).sum()
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if with_scale else 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def moments_alignment(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Fallback without landmarks: match centroids and RMS radii.

    The canonical frame already puts the scan's up and front axes where the template has
    them, so no rotation is guessed: principal axes of a head with or without shoulders
    or hair are not reliable enough to beat the user-given axes.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    scale = 1.0
    if with_scale:
        scale = float(
            np.sqrt(((dst - mu_d) ** 2).sum(1).mean() / ((src - mu_s) ** 2).sum(1).mean())
        )
    return Similarity(scale, np.eye(3), mu_d - scale * mu_s)


def robust_similarity(session: FitSession, src: np.ndarray, with_scale: bool,
                      share: np.ndarray | None = None) -> Similarity:
    """Weighted Umeyama of template landmarks ``src`` (L,3) onto the session's targets, by IRLS.

    Starts from least squares with the targets' weights (times ``share`` (L,) where given),
    then re-solves with those weights times the robust factors of the current residuals
    (``fit/robust.py``) until the factors settle. With the kernel off this is the plain
    weighted least-squares solve.
    """
    lm = session.landmark_targets
    weights = lm.weights if share is None else lm.weights * share
    keep = weights > 0
    dst = lm.points[keep].astype(np.float64)
    base = weights[keep].astype(np.float64)
    sim = umeyama(src[keep], dst, base, with_scale)
    factors = np.ones(len(dst))
    for _ in range(IRLS_ROUNDS):
        residuals = np.zeros(len(lm.weights))
        residuals[keep] = np.linalg.norm(sim.apply(src[keep]) - dst, axis=1)
        new, _ = factors_for(session, residuals)
        new = new[keep].astype(np.float64)
        if np.abs(new - factors).max() <= IRLS_TOLERANCE:
            break
        factors = new
        sim = umeyama(src[keep], dst, base * factors, with_scale)
    return sim


def skull_share(session: FitSession) -> np.ndarray | None:
    """(L,) how much the skull carries each landmark (1 - the jaw's share), where the mouth is
    open, the jaw stage runs and ``stages.jaw.skull_first`` asks the stages before it to
    align the skull alone (the open jaw would tilt and stretch them); None otherwise. Falls
    back to None where fewer than ``MIN_LANDMARKS`` landmarks would keep any weight."""
    jaw = session.config.stage("jaw")
    if not (jaw.get("enabled", True) and jaw.get("skull_first", False)
            and session.mouth_open()):
        return None
    share = 1.0 - session.landmark_jaw_weights()
    if int(((session.landmark_targets.weights * share) > 0).sum()) < MIN_LANDMARKS:
        return None
    return share


class RigidStage(FitStage):
    """One iteration: moves the template onto the scan by a similarity."""

    name = "rigid"

    def num_steps(self, session: FitSession) -> int:
        return 1

    def step(self, session: FitSession) -> dict[str, float]:
        with_scale = bool(self.params(session)["with_scale"])
        template = session.template_vertices.cpu().numpy().astype(np.float64)
        lm = session.landmark_targets
        usable = lm is not None and int((lm.weights > 0).sum()) >= MIN_LANDMARKS
        if usable:
            src = session.embedding_points(session.template_vertices).cpu().numpy()[lm.indices]
            keep = lm.weights > 0
            sim = robust_similarity(session, src, with_scale, skull_share(session))
            residual = float(np.linalg.norm(sim.apply(src[keep]) - lm.points[keep], axis=1).mean())
            losses = {"landmark_3d": residual}
        else:
            sim = moments_alignment(
                template, session.scan_canonical.vertices.astype(np.float64), with_scale
            )
            # No landmark residual to report (a NaN here would read as a failed step).
            losses = {}
            session.note("rigid: no landmarks, aligned centroids and sizes instead")
        session.rigid = sim
        moved = sim.apply(template).astype(np.float32)
        session.vertices = torch.from_numpy(moved).to(session.device)
        return {**losses, "scale": sim.scale}
