"""``reflame``: the command line. Subcommands come from the ``reflame.commands`` entry points
(each a function ``add_parser(subparsers)``), so the GUI package can add ``gui`` without the
core ever importing it. ``reflame`` alone opens the GUI when it is installed."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from reflame_core.errors import ReflameError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reflame", description="Fit the FLAME head topology to textured 3D head scans."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="reflame.commands"), key=lambda e: e.name):
        try:
            add_parser = ep.load()
        except ImportError as exc:  # an optional part that is not installed
            sub.add_parser(ep.name, help=f"(unavailable: {exc})")
            continue
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        argv = ["gui"] if "gui" in parser._subparsers._group_actions[0].choices else ["--help"]
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ReflameError as exc:
        print(f"reflame {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reflame {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
