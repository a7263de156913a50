"""``reflame gui [SCAN]``: registered through the ``reflame.commands`` entry point, so the
core CLI imports this module only when listing commands and never imports Polyscope unless
the gui command runs."""

from __future__ import annotations

import argparse

from reflame_core.errors import ReflameError
from reflame_core.fit.config import PRESETS
from reflame_core.fit.run import pick_device


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="open ReFLAME Studio (interactive fitting)")
    p.add_argument("scan", nargs="?", help="scan to open (OBJ/PLY/GLB)")
    p.add_argument("--flame-dir", help="folder with the FLAME files")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where the fit runs (default: cuda when available)")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="config preset (default: 'default' on a GPU, 'fast' on the CPU)")
    p.set_defaults(handler=_run)


GUI_EXTRA_HINT = ('the studio needs the GUI extra, which is not installed ({why}); install it '
                  'with: pip install "reflame-studio[gui]" (or use `reflame fit SCAN --out DIR`)')


def _load_studio():
    """``run_app``, or ReflameError saying how to install the GUI extra when Polyscope or its
    ImGui bindings are missing."""
    try:
        from reflame_app.main import imgui_ok, run_app
    except ImportError as exc:
        raise ReflameError(GUI_EXTRA_HINT.format(why=f"{exc.name or exc} missing")) from None
    if not imgui_ok():
        raise ReflameError(GUI_EXTRA_HINT.format(why="polyscope has no ImGui bindings"))
    return run_app


def _run(args: argparse.Namespace) -> int:
    run_app = _load_studio()

    device = pick_device(args.device)
    preset = args.preset or ("default" if device == "cuda" else "fast")
    return run_app(args.scan, args.flame_dir, device=device, preset=preset)
