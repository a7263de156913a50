"""``reflame gui [SCAN]``: registered through the ``reflame.commands`` entry point, so the
core CLI imports this module only when listing commands and never imports Polyscope unless
the gui command runs."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="open ReFLAME Studio (interactive fitting)")
    p.add_argument("scan", nargs="?", help="scan to open (OBJ/PLY/GLB)")
    p.add_argument("--flame-dir", help="folder with the FLAME files")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--preset", default="default", help="config preset: default, seed, fast")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from reflame_app.main import run_app

    return run_app(args.scan, args.flame_dir, device=args.device, preset=args.preset)
