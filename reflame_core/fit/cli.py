"""``reflame fit SCAN --out DIR``: the headless fit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reflame_core.fit.config import PRESETS, FitConfig

DETECTED_LANDMARKS = "detected_landmarks.json"  # written when the fit detected its own


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit FLAME to a scan, headless",
        description="Fit the FLAME template to SCAN and write the results.",
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
    p.add_argument("--up", help="scan's up axis (+x -x +y -y +z -z)")
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
    from tqdm import tqdm

    from reflame_core.fit.outputs import write_fit_outputs
    from reflame_core.fit.setup import load_inputs, make_session

    overrides = list(args.overrides)
    overrides += [f'frame.up="{args.up}"'] if args.up else []
    overrides += [f'frame.front="{args.front}"'] if args.front else []
    config = FitConfig.load(args.config, preset=args.preset, overrides=overrides)
    device = pick_device(args.device)
    inputs = load_inputs(
        args.scan,
        flame_dir=args.flame_dir,
        landmarks=args.landmarks,
        config=config,
        device=device,
        log=lambda m: print(m, file=sys.stderr),
    )
    if args.landmarks is None and inputs.landmarks is not None:
        # Saved before fitting: the user can correct them (GUI) and fit again with --landmarks.
        from reflame_core.landmarks.landmark_json import save_landmarks

        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / DETECTED_LANDMARKS
        save_landmarks(path, inputs.landmarks, inputs.scan.vertices, inputs.scan.faces)
        print(f"landmarks: wrote {path} (edit it and pass it with --landmarks)",
              file=sys.stderr)
    session = make_session(inputs, config, device=device)
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
                    disable=args.quiet,
                    file=sys.stderr,
                    leave=True,
                )
            report = session.step()
            bar.update(1)
            if report.event:
                tqdm.write(f"{report.stage}: {report.event}", file=sys.stderr)
            if "total" in report.losses:
                bar.set_postfix(loss=f"{report.losses['total']:.4g}", refresh=False)
    except KeyboardInterrupt:
        print("interrupted: writing the fit as it is now", file=sys.stderr)
        session.note("interrupted by the user")
    finally:
        if bar is not None:
            bar.close()
    report = write_fit_outputs(session, args.out)
    rel = report["distances_relative_to_scan_size"]
    print(
        f"wrote {args.out}  ({report['total_seconds']:.1f} s; fit->scan mean "
        f"{100 * rel['fit_to_scan_mean']:.2f}% of scan size, scan->fit mean "
        f"{100 * rel['scan_to_fit_mean']:.2f}%)"
    )
    return 0
