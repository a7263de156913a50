"""``reflame fit SCAN --out DIR``: the headless fit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from reflame_core.fit.config import PRESETS, FitConfig
from reflame_core.fit.config_rules import AXES

if TYPE_CHECKING:
    from reflame_core.fit.session import FitSession

EXIT_DIVERGED = 3  # outputs written as of the last finite step
DETECTED_LANDMARKS = "detected_landmarks.json"  # written when the fit detected its own


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit FLAME to a scan, headless",
        description="Fit the FLAME template to SCAN and write the results into --out. "
        "Every setting and the output folder are checked before any work starts. An output "
        "file already in --out (e.g. a corrected detected_landmarks.json) is never "
        "overwritten: it is renamed to NAME.YYYYmmdd-HHMMSS.bak.EXT first. Ctrl-C or SIGTERM "
        "writes the fit as it stands (report.json: \"interrupted\": true) and exits 130 / "
        "143; a bad input exits 2.",
    )
    p.add_argument("scan", type=Path, help="scan file (OBJ + MTL + texture, PLY, GLB/GLTF)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--config", type=Path, help="TOML file overriding the preset")
    p.add_argument("--preset", choices=PRESETS, default="default")
    p.add_argument("--landmarks", type=Path, help="landmark JSON (else: detected)")
    p.add_argument("--flame-dir", type=Path, help="folder with the FLAME files")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set stages.coarse.steps=500",
    )
    p.add_argument("--up", help=f"scan's up axis ({' '.join(AXES)})")
    p.add_argument("--front", help="axis the scan's face looks along")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_fit)


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from reflame_core.errors import ReflameError

        raise ReflameError("--device cuda: no CUDA device is available to PyTorch")
    return name


def run_fit(args: argparse.Namespace) -> int:
    from reflame_core.fit.session import NonFiniteStepError
    from reflame_core.interrupts import exit_code_of, signal_name_of, signals_as_interrupts
    from reflame_core.io.output_folder import check_output_dir

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    # Everything that can be checked without computing is checked first: a bad setting or
    # output folder fails in a second, not after minutes of fitting.
    overrides = list(args.overrides)
    overrides += [f'frame.up="{args.up}"'] if args.up else []
    overrides += [f'frame.front="{args.front}"'] if args.front else []
    config = FitConfig.load(args.config, preset=args.preset, overrides=overrides)
    check_output_dir(args.out)
    device = pick_device(args.device)
    with signals_as_interrupts():
        session = _prepare(args, config, device, log)
        interrupt: KeyboardInterrupt | None = None
        diverged: NonFiniteStepError | None = None
        try:
            _run_session(session, quiet=args.quiet)
        except KeyboardInterrupt as exc:
            interrupt = exc
        except NonFiniteStepError as exc:  # the session is as after its last finite step
            diverged = exc
            log(f"reflame fit: {exc}; writing the fit as of its last finite step")
            session.record(f"stopped: {exc}")
        interrupted_by = signal_name_of(interrupt) if interrupt else None
        if interrupted_by:
            log(f"interrupted ({interrupted_by}): writing the fit as it is now")
            session.record(f"interrupted by {interrupted_by}")
        from reflame_core.fit.outputs import write_fit_outputs

        report = write_fit_outputs(session, args.out, interrupted_by=interrupted_by)
    rel = report["distances_relative_to_scan_size"]
    print(
        f"wrote {args.out}  ({report['total_seconds']:.1f} s; fit->scan mean "
        f"{100 * rel['fit_to_scan_mean']:.2f}% of scan size, scan->fit mean "
        f"{100 * rel['scan_to_fit_mean']:.2f}%)"
        + (f"; interrupted by {interrupted_by}" if interrupted_by else "")
        + ("; STOPPED: the fit diverged (see report.json events)" if diverged else "")
    )
    if interrupt:
        return exit_code_of(interrupt)
    return EXIT_DIVERGED if diverged else 0


def _prepare(args: argparse.Namespace, config: FitConfig, device: str, log) -> FitSession:
    """Inputs loaded and checked, the output folder ready (old files backed up), the session
    built."""
    from reflame_core.fit.outputs import FIT_OUTPUT_NAMES
    from reflame_core.fit.setup import load_inputs, make_session
    from reflame_core.io.output_folder import prepare_output_dir

    inputs = load_inputs(
        args.scan,
        flame_dir=args.flame_dir,
        landmarks=args.landmarks,
        config=config,
        device=device,
        log=log,
    )
    detected = args.landmarks is None and inputs.landmarks is not None
    prepare_output_dir(args.out, FIT_OUTPUT_NAMES + ((DETECTED_LANDMARKS,) if detected else ()),
                       log)
    if detected:
        # Saved before fitting: the user can correct them (GUI) and fit again with --landmarks.
        from reflame_core.landmarks.landmark_json import save_landmarks

        path = args.out / DETECTED_LANDMARKS
        save_landmarks(path, inputs.landmarks, inputs.scan.vertices, inputs.scan.faces)
        log(f"landmarks: wrote {path} (edit it and pass it with --landmarks)")
    return make_session(inputs, config, device=device)


def _run_session(session: FitSession, *, quiet: bool) -> None:
    """Step ``session`` to the end with one progress bar per stage (on stderr)."""
    from tqdm import tqdm

    bar, bar_stage = None, None
    try:
        while not session.done:
            stage = session.current
            if stage.name != bar_stage:
                if bar is not None:
                    bar.close()
                bar_stage = stage.name
                bar = tqdm(
                    total=stage.num_steps(session),
                    desc=stage.name,
                    disable=quiet,
                    file=sys.stderr,
                    leave=True,
                )
            report = session.step()
            bar.update(1)
            if report.event:
                tqdm.write(f"{report.stage}: {report.event}", file=sys.stderr)
            if "total" in report.losses:
                bar.set_postfix(loss=f"{report.losses['total']:.4g}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
