"""Where the shipped configs and landmark definitions (the repo's ``resources/``) are found."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    """The folder holding ``default.toml`` and the landmark definitions.

    A source checkout or editable install uses the repo's ``resources/``; a wheel install
    puts it under ``<prefix>/share/reflame/resources``.
    """
    candidates = [
        Path(__file__).resolve().parent.parent / "resources",
        Path(sys.prefix) / "share" / "reflame" / "resources",
    ]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "ReFLAME resources folder not found (looked in: "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall the package."
    )
