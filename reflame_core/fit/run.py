"""``fit_scan``: one scan file in, a written fit out. The public entry point that ``reflame fit``
wraps and that ``reflame batch`` runs on every worker.

Everything that can be checked without computing (settings, output folder, device) is checked
first, so a bad call fails in a second, not after minutes of fitting.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflame_core.errors import ReflameError
from reflame_core.fit.config import FitConfig
from reflame_core.fit.progress import FitProgress

if TYPE_CHECKING:
    from reflame_core.fit.setup import FlameAssets

DETECTED_LANDMARKS = "detected_landmarks.json"  # written when the fit detected its own

_log = logging.getLogger("reflame")


@dataclass
class FitResult:
    """What ``fit_scan`` did.

    Attributes:
        out_dir: the output folder.
        paths: file name -> path of every file written (``fit.obj``, ``report.json``, ...).
        report: the report dict, as saved in ``report.json``.
        timings: seconds spent loading inputs (``load``: scan, FLAME, landmarks or their
            detection), fitting (``fit``), writing (``write``) and in all (``total``); the
            per-stage seconds are in ``report["stages"]``.
        status: "done", "diverged" (non-finite losses several steps in a row: the outputs
            are as of the last finite step) or "interrupted" (SIGINT / SIGTERM).
        error: the one-line reason when ``status`` is "diverged".
        interrupted_by: "SIGINT" or "SIGTERM" when interrupted.
    """

    out_dir: Path
    paths: dict[str, Path]
    report: dict
    timings: dict[str, float] = field(default_factory=dict)
    status: str = "done"
    error: str | None = None
    interrupted_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


def pick_device(name: str) -> str:
    """"auto" -> "cuda" when PyTorch sees a GPU, else "cpu"; "cuda" without one is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cuda", "cpu"):
        raise ReflameError(f"--device {name}: use auto, cuda or cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReflameError("--device cuda: no CUDA device is available to PyTorch")
    return name


def as_config(config: FitConfig | str | None) -> FitConfig:
    """A FitConfig from a FitConfig (used as is), a preset name, or None (the default)."""
    if isinstance(config, FitConfig):
        return config
    return FitConfig.preset(config or "default")


def fit_scan(
    scan_path: str | Path,
    out_dir: str | Path,
    *,
    landmarks: str | Path | None = None,
    config: FitConfig | str | None = None,
    device: str = "auto",
    progress: Callable[[FitProgress], None] | None = None,
    flame: str | Path | FlameAssets | None = None,
    log: Callable[[str], None] | None = None,
    report_extra: dict[str, Any] | None = None,
) -> FitResult:
    """Fit FLAME to the scan at ``scan_path`` and write the results into ``out_dir``.

    Args:
        scan_path: OBJ (+ MTL + texture), PLY, GLB or GLTF.
        out_dir: output folder (created). A file already there that the fit writes is
            first renamed to a timestamped backup (``NAME.YYYYmmdd-HHMMSS.bak.EXT``).
        landmarks: landmark JSON on this scan; None detects them (saved as
            ``detected_landmarks.json``), and a detection that finds no face fits without.
        config: a ``FitConfig``, a preset name ("default", "seed", "fast") or None.
        device: "auto" (CUDA when available), "cuda" or "cpu".
        progress: called after every step with a ``FitProgress``.
        flame: the FLAME folder, or assets already loaded (``setup.load_flame``); None
            looks in $REFLAME_FLAME_DIR, then the user config.
        log: gets one line per notable thing (backups, detection); default: logging.
        report_extra: more keys for ``report.json`` (``reflame batch`` records its job hash);
            the report always has ``status`` (as ``FitResult.status``).

    Returns:
        A ``FitResult``. A fit that diverges or is interrupted (SIGINT / SIGTERM in the main
        thread) still writes its outputs as they stand and returns with that ``status``.

    Raises:
        ReflameError (InputFileError, ConfigError, AssetError, OutputPathError...) for a bad
        input, naming the file or setting; anything else a fit step raises (e.g. CUDA out of
        memory), with nothing written but the detected landmarks.
    """
    from reflame_core.fit.outputs import FIT_OUTPUT_NAMES, write_fit_outputs
    from reflame_core.fit.session import NonFiniteStepError
    from reflame_core.interrupts import signal_name_of, signals_as_interrupts
    from reflame_core.io.output_folder import check_output_dir

    say = log or _log.info
    t0 = time.perf_counter()
    config = as_config(config)
    out = check_output_dir(out_dir)
    device = pick_device(device)
    with signals_as_interrupts():
        session, paths, warnings = _prepare(scan_path, out, landmarks, config, device, flame,
                                            say)
        t_loaded = time.perf_counter()
        status, error, interrupted_by = "done", None, None
        try:
            _run(session, progress)
        except KeyboardInterrupt as exc:
            interrupted_by = signal_name_of(exc)
            status = "interrupted"
            say(f"interrupted ({interrupted_by}): writing the fit as it is now")
            session.record(f"interrupted by {interrupted_by}")
        except NonFiniteStepError as exc:  # the session is as after its last finite step
            status, error = "diverged", str(exc)
            say(f"{exc}; writing the fit as of its last finite step")
            session.record(f"stopped: {exc}")
        t_fitted = time.perf_counter()
        report = write_fit_outputs(session, out, interrupted_by=interrupted_by,
                                   warnings=warnings,
                                   extra={"status": status, **(report_extra or {})})
    t_end = time.perf_counter()
    # Old outputs were backed up before the fit: every one of these files is this run's.
    paths.update({n: out / n for n in FIT_OUTPUT_NAMES if (out / n).is_file()})
    timings = {"load": t_loaded - t0, "fit": t_fitted - t_loaded, "write": t_end - t_fitted,
               "total": t_end - t0}
    return FitResult(out, paths, report, timings, status, error, interrupted_by)


def _prepare(scan_path, out: Path, landmarks, config: FitConfig, device: str, flame,
             say: Callable[[str], None]):
    """Inputs loaded and checked, the output folder ready (old files backed up), the session
    built; returns it with the files written so far and what the report must warn of."""
    from reflame_core.fit.outputs import FIT_OUTPUT_NAMES
    from reflame_core.fit.setup import load_inputs, make_session
    from reflame_core.io.output_folder import prepare_output_dir
    from reflame_core.landmarks.plausibility import detection_doubtful

    inputs = load_inputs(scan_path, flame_dir=flame, landmarks=landmarks, config=config,
                         device=device, log=say)
    detected = landmarks is None and inputs.landmarks is not None
    prepare_output_dir(out, FIT_OUTPUT_NAMES + ((DETECTED_LANDMARKS,) if detected else ()), say)
    paths: dict[str, Path] = {}
    warnings: list[str] = []
    if detected:
        # Saved before fitting: the user can correct them (GUI) and fit again with them.
        from reflame_core.landmarks.landmark_json import save_landmarks

        path = paths[DETECTED_LANDMARKS] = out / DETECTED_LANDMARKS
        save_landmarks(path, inputs.landmarks, inputs.scan.vertices, inputs.scan.faces)
        say(f"landmarks: wrote {path} (edit it and pass it with --landmarks)")
        # Said here, once, for the log and the report alike.
        doubt = detection_doubtful(inputs.landmarks)
        if doubt:
            say(f"landmarks: WARNING: {doubt} (in the studio: reflame gui; then fit again "
                "with --landmarks)")
            warnings.append(f"{doubt} ({DETECTED_LANDMARKS})")
    return make_session(inputs, config, device=device), paths, warnings


def _run(session, progress: Callable[[FitProgress], None] | None) -> None:
    """Step ``session`` to the end, telling ``progress`` after every step."""
    while not session.done:
        stage = session.current
        name, total = stage.name, stage.num_steps(session)
        report = session.step()
        if progress is not None:
            progress(FitProgress(name, stage.iteration, total, report))


def exit_code(result: FitResult) -> int:
    """The shell exit code of a fit: 0 done, 3 diverged, 128 + signal when interrupted."""
    if result.interrupted_by:
        return 128 + int(signal.Signals[result.interrupted_by])
    return 3 if result.status == "diverged" else 0
