"""``reflame batch INPUTS... --out DIR``: fit many scans on a Dask cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from reflame_core.fit.config import PRESETS
from reflame_core.fit.config_rules import AXES

EXIT_SOME_FAILED = 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="fit many scans (folders, globs, manifests) on a Dask cluster, resumably",
        description="Fit every scan INPUTS name: folders (searched recursively for .obj "
        ".ply .glb .gltf), globs, scan files, or CSV/TXT manifests (per-scan landmarks and "
        "--set overrides). Each scan gets its own folder in --out, named from its path; it "
        "appears only once its fit is complete. A scan whose folder holds a finished fit of "
        "the same inputs and settings is skipped (--force redoes it). Failures are recorded "
        "and never stop the others. summary.csv / summary.json list every scan. Runs on a "
        "local Dask cluster (one worker per visible GPU, else --workers CPU workers) or on "
        "--scheduler ADDRESS. Exit codes: 0 every scan done, 1 some failed, 2 a bad input.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="scan file, folder, glob (quote it), or manifest (.csv / .txt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (one folder per scan)")
    p.add_argument("--config", type=Path, help="TOML file overriding the preset")
    p.add_argument("--preset", choices=PRESETS, default="default")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting for every scan, e.g. --set stages.coarse.steps=500")
    p.add_argument("--up", help=f"the scans' up axis ({' '.join(AXES)})")
    p.add_argument("--front", help="axis the scans' faces look along")
    p.add_argument("--flame-dir", type=Path, help="folder with the FLAME files (the same path "
                   "on every worker)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: one worker per visible GPU, else CPU workers")
    p.add_argument("--workers", type=int, help="CPU workers without a GPU (default 1); with "
                   "GPUs, use at most this many")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this existing Dask cluster (e.g. tcp://host:8786)")
    p.add_argument("--force", action="store_true", help="fit again scans already done")
    p.add_argument("--retries", type=int, default=1, help="retries of a scan that ran out of "
                   "memory: with preset fast, then on the CPU (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reflame_core.batch.schedule import BatchOptions, run_batch
    from reflame_core.errors import ReflameError
    from reflame_core.interrupts import signals_as_interrupts

    if args.workers is not None and args.workers < 1:
        raise ReflameError(f"--workers must be at least 1, got {args.workers}")
    if args.retries < 0:
        raise ReflameError(f"--retries must be 0 or more, got {args.retries}")
    overrides = list(args.overrides)
    overrides += [f'frame.up="{args.up}"'] if args.up else []
    overrides += [f'frame.front="{args.front}"'] if args.front else []
    with signals_as_interrupts():  # SIGTERM (a scheduler's timeout) stops it like Ctrl-C
        doc = run_batch(BatchOptions(
            inputs=list(args.inputs), out=args.out, config_path=args.config,
            preset=args.preset, overrides=overrides, flame_dir=args.flame_dir,
            device=args.device, workers=args.workers, scheduler=args.scheduler,
            force=args.force, retries=args.retries, quiet=args.quiet,
        ))
    return EXIT_SOME_FAILED if doc["failed"] else 0
