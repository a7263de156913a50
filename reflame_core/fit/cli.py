"""``reflame fit SCAN --out DIR``: the headless fit, a thin wrapper over ``fit_scan``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reflame_core.fit.config import PRESETS, FitConfig
from reflame_core.fit.config_rules import AXES


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


def run_fit(args: argparse.Namespace) -> int:
    """``reflame fit``: the settings from the flags, then ``fit_scan`` with progress bars."""
    from reflame_core.fit.progress import StageBars
    from reflame_core.fit.run import exit_code, fit_scan

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    overrides = list(args.overrides)
    overrides += [f'frame.up="{args.up}"'] if args.up else []
    overrides += [f'frame.front="{args.front}"'] if args.front else []
    config = FitConfig.load(args.config, preset=args.preset, overrides=overrides)
    bars = StageBars(disable=args.quiet)
    try:
        result = fit_scan(args.scan, args.out, landmarks=args.landmarks, config=config,
                          device=args.device, progress=bars, flame=args.flame_dir, log=log)
    finally:
        bars.close()
    rel = result.report["distances_relative_to_scan_size"]
    for warning in result.report.get("warnings", []):
        log(f"WARNING: {warning}")
    print(
        f"wrote {args.out}  ({result.report['total_seconds']:.1f} s; fit->scan mean "
        f"{100 * rel['fit_to_scan_mean']:.2f}% of scan size, scan->fit mean "
        f"{100 * rel['scan_to_fit_mean']:.2f}%)"
        + (f"; interrupted by {result.interrupted_by}" if result.interrupted_by else "")
        + ("; STOPPED: the fit diverged (see report.json events)"
           if result.status == "diverged" else "")
    )
    return exit_code(result)
