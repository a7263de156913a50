"""``reflame``: the command line. Subcommands come from the ``reflame.commands`` entry points
(each a function ``add_parser(subparsers)``), so the GUI package can add ``gui`` without the
core ever importing it. ``reflame`` alone opens the GUI when it is installed."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from reflame_core.errors import ReflameError
from reflame_core.interrupts import exit_code_of, signal_name_of


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reflame", description="Fit the FLAME head topology to textured 3D head scans."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="reflame.commands"), key=lambda e: e.name):
        try:
            add_parser = ep.load()
        except ImportError as exc:  # an optional part that is not installed
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})")
            p.set_defaults(handler=_unavailable(ep.name, exc))
            continue
        add_parser(sub)
    return parser


AXIS_OPTIONS = ("--up", "--front")
AXIS_VALUES = ("+x", "-x", "+y", "-y", "+z", "-z")


def join_axis_values(argv: list[str]) -> list[str]:
    """``--front -y`` -> ``--front=-y``: argparse would read ``-y`` as an option and fail,
    yet that is how the README and every user writes an axis."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in AXIS_OPTIONS and i + 1 < len(argv) and argv[i + 1] in AXIS_VALUES:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _unavailable(name: str, exc: ImportError):
    """Handler of a command whose module cannot be imported: one line saying what to install."""
    extra = "gui" if name == "gui" else None
    hint = f'; install it with: pip install "reflame-studio[{extra}]"' if extra else ""

    def handler(_args: argparse.Namespace) -> int:
        raise ReflameError(f"not available ({exc.name or exc} missing){hint}")

    return handler


def main(argv: list[str] | None = None) -> int:
    argv = join_axis_values(sys.argv[1:] if argv is None else list(argv))
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
    except KeyboardInterrupt as exc:
        print(f"reflame {args.command}: interrupted ({signal_name_of(exc)})", file=sys.stderr)
        return exit_code_of(exc)


if __name__ == "__main__":
    sys.exit(main())
