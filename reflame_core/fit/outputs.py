"""Everything ``reflame fit`` writes: meshes, landmarks, loss history, config, report."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import sample_surface
from reflame_core.io.atomic import atomic_write, write_json_atomic
from reflame_core.io.obj import write_obj

# Every file write_fit_outputs may write (the MTL and PNG only with a texture); the CLI backs
# up the ones already in the folder before a run.
FIT_OUTPUT_NAMES = (
    "fit.obj", "fit.mtl", "fit.png", "fit_canonical.obj", "landmarks.json", "losses.csv",
    "config.toml", "transform.json", "report.json",
)


def surface_distances(
    fit_vertices: np.ndarray,
    fit_faces: np.ndarray,
    scan_vertices: np.ndarray,
    scan_faces: np.ndarray,
    samples: int = 50000,
    device: str = "cpu",
) -> dict[str, float]:
    """Mean and 95th-percentile distances fit->scan and scan->fit, between dense surface
    samples of both meshes (same units as the vertices); nearest points found on ``device``."""
    fit_pts, _ = sample_surface(fit_vertices, fit_faces, samples, seed=1)
    scan_pts, _ = sample_surface(scan_vertices, scan_faces, samples, seed=2)
    f2s = _nearest_distances(fit_pts, scan_pts, device)
    s2f = _nearest_distances(scan_pts, fit_pts, device)
    return {
        "fit_to_scan_mean": float(f2s.mean()),
        "fit_to_scan_p95": float(np.percentile(f2s, 95)),
        "scan_to_fit_mean": float(s2f.mean()),
        "scan_to_fit_p95": float(np.percentile(s2f, 95)),
    }


def _nearest_distances(queries: np.ndarray, points: np.ndarray, device: str) -> np.ndarray:
    """(Q,) distance of each query (Q,3) to the nearest of ``points`` (P,3)."""
    import torch

    from reflame_core.fit.losses import nearest

    q = torch.as_tensor(queries, device=device)
    p = torch.as_tensor(points, device=device)
    return (q - p[nearest(q, p)]).norm(dim=1).cpu().numpy()


def write_loss_history(path: Path, session: FitSession) -> None:
    atomic_write(path, lambda p: _write_loss_csv(p, session))


def _write_loss_csv(path: Path, session: FitSession) -> None:
    keys = sorted({k for r in session.history for k in r.losses})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["stage", "iteration", "seconds", *keys, "event"])
        for r in session.history:
            w.writerow(
                [
                    r.stage,
                    r.iteration,
                    f"{r.seconds:.5f}",
                    *[r.losses.get(k, "") for k in keys],
                    r.event or "",
                ]
            )


def stage_summary(session: FitSession, *, interrupted: bool = False) -> dict[str, dict]:
    """Per stage: status, iterations used and allowed, why it ended, seconds spent, last
    losses. In a fit that was ``interrupted``, the stage it cut off reads "interrupted"
    (its iterations are those it ran)."""
    out: dict[str, dict] = {}
    for s in session.stages:
        reps = [r for r in session.history if r.stage == s.name]
        cut_off = interrupted and s.status == "running"
        out[s.name] = {
            "status": "interrupted" if cut_off else s.status,
            "iterations": s.iteration,
            "max_iterations": s.num_steps(session),
            "end_reason": s.end_reason,
            "seconds": float(sum(r.seconds for r in reps)),
            "final_losses": reps[-1].losses if reps else {},
        }
    return out


def _peak_gpu_memory(device: str) -> int | None:
    """Most GPU memory PyTorch's allocator held at once in this process, bytes; None on CPU."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated())


# Fits that lie on their scan end at 0.2-0.5% of its size (fit->scan mean); beyond this the
# fit did not find the head (a wrong up/front, landmarks on something else, not a head).
FAR_FROM_SCAN = 0.02


def fit_warnings(fit_to_scan_relative: float, landmarks_used: int) -> list[str]:
    """What a user must look at before using the fit, one line each (empty: nothing).
    ``landmarks_used``: how many landmarks the fit was given (0: it ran on the surface alone,
    so nothing placed the face; the log says why detection gave none)."""
    out = []
    if landmarks_used == 0:
        out.append("fitted without landmarks, so the face may be misplaced: place them in the "
                   "studio (reflame gui) or pass a landmark file with --landmarks")
    if fit_to_scan_relative > FAR_FROM_SCAN:
        out.append(f"the fit lies far from the scan (fit->scan mean "
                   f"{100 * fit_to_scan_relative:.1f}% of its size; a fit on its scan ends at "
                   "0.2-0.5%): check that the scan is a head, its up and front axes "
                   "(--up/--front), and its landmarks")
    return out


def write_fit_outputs(
    session: FitSession,
    out_dir: str | Path,
    *,
    interrupted_by: str | None = None,
    warnings: list[str] | None = None,
    extra: dict | None = None,
) -> dict:
    """Write the fit into ``out_dir``; returns the report dict (also saved as report.json).

    Files: ``fit.obj`` (scan frame and units, FLAME topology and UVs, textured when the
    texture stage ran), ``fit_canonical.obj``, ``landmarks.json``, ``losses.csv``,
    ``config.toml``, ``transform.json`` (scan -> canonical similarity), ``report.json``.
    Each is written atomically; JSON has null where a number is not finite (e.g. landmark
    losses of a fit without landmarks). ``interrupted_by`` (e.g. "SIGINT") marks a fit
    that was stopped before its last stage ended: report.json's ``interrupted`` is true.
    ``warnings`` are the inputs' (a doubtful detection), listed before the fit's own.
    ``extra`` adds keys to the report (``reflame batch`` records its job hash there).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmpl = session.template
    canon = session.vertices.detach().cpu().numpy()
    scan_frame = session.vertices_in_scan_frame()
    tex = session.texture
    write_obj(out / "fit.obj", scan_frame, tmpl.faces, uv=tmpl.uv, uv_faces=tmpl.uv_faces,
              texture=tex)
    # The canonical mesh shares fit.obj's texture (one image written, not two).
    write_obj(out / "fit_canonical.obj", canon, tmpl.faces, uv=tmpl.uv, uv_faces=tmpl.uv_faces,
              material="fit" if tex is not None else None)

    lm_doc: dict = {
        "frame": "scan",
        "fitted_flame_landmarks": session.landmarks_in_scan_frame().tolist(),
    }
    if session.landmark_targets is not None:
        lt = session.landmark_targets
        lm_doc["targets"] = {
            "indices": lt.indices.tolist(),
            "groups": lt.groups,
            "weights": lt.weights.tolist(),
            "points": session.to_canonical.inverse().apply(lt.points.astype(np.float64)).tolist(),
        }
    write_json_atomic(out / "landmarks.json", lm_doc)
    write_loss_history(out / "losses.csv", session)
    session.config.save(out / "config.toml")
    write_json_atomic(out / "transform.json", {"scan_to_canonical": session.to_canonical.to_dict()})

    # Against the part of the scan that was fitted: a bust's shoulders are no fit error.
    fitted = session.fitted_scan
    height = float(fitted.extent.max())
    dist = surface_distances(scan_frame, tmpl.faces, fitted.vertices, fitted.faces,
                             device=session.device)
    report = {
        "scan": str(session.scan.path) if session.scan.path else None,
        # What the loader changed or went without (textures packed, faces turned outward).
        "scan_notes": list(session.scan.notes),
        "device": session.device,
        "interrupted": interrupted_by is not None,
        "interrupted_by": interrupted_by,
        "stages": stage_summary(session, interrupted=interrupted_by is not None),
        "total_seconds": float(sum(r.seconds for r in session.history)),
        "peak_gpu_memory_bytes": _peak_gpu_memory(session.device),
        "distances_scan_units": dist,
        "distances_relative_to_scan_size": {k: v / height for k, v in dist.items()},
        "warnings": list(warnings or []) + fit_warnings(
            dist["fit_to_scan_mean"] / height,
            0 if session.landmark_targets is None
            else int((session.landmark_targets.weights > 0).sum())),
        "events": session.events,
        # Detected landmarks the fit ended up contradicting (residual / scan size, weight).
        "landmark_outliers": [o.to_dict() for o in session.landmark_outliers()],
        **(extra or {}),
    }
    write_json_atomic(out / "report.json", report)
    return report
