"""Output paths: checked before any long computation, and never destroying a user's file.

Policy (README "Use", and every command's ``--help``): an output file that already exists
is never overwritten in place; it is first renamed to a timestamped backup
``<stem>.<YYYYmmdd-HHMMSS>.bak<suffix>`` beside it (e.g. ``detected_landmarks.20260126-
101500.bak.json``) and the command says so on stderr. New files are then written atomically.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from reflame_core.errors import OutputPathError
from reflame_core.io.atomic import remove_stale_temps


def _first_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(folder: str | Path) -> Path:
    """Raise OutputPathError unless ``folder`` is, or can be created as, a writable folder.

    Creates nothing, so a later input error leaves no empty folder behind.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(folder, "output folder is an existing file, not a folder")
    base = _first_existing(folder)
    if not base.is_dir():
        raise OutputPathError(folder, f"cannot create the output folder: {base} is a file")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(folder, f"output folder is not writable ({base})")
    # Permission bits say yes where a read-only mount, a pseudo file system or a full disk
    # says no (for root, always): try once, and leave nothing.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".reflame-check-", dir=base))
    except OSError as exc:
        raise OutputPathError(folder, f"cannot write in {base} ({exc.strerror or exc})") from None
    return folder


def check_output_file(path: str | Path) -> Path:
    """Raise OutputPathError unless ``path`` can be written as a file (its folder may be
    missing: it is created on writing)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(path, "output is an existing folder, a file name is needed")
    check_output_dir(path.parent)
    return path


def backup_name(path: Path, stamp: str) -> Path:
    """``<stem>.<stamp>.bak<suffix>`` beside ``path``, numbered when that name is taken."""
    candidate = path.with_name(f"{path.stem}.{stamp}.bak{path.suffix}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.{stamp}-{n}.bak{path.suffix}")
        n += 1
    return candidate


def back_up_existing(
    folder: str | Path, names: Iterable[str], log: Callable[[str], None]
) -> list[Path]:
    """Rename every file of ``names`` that exists in ``folder`` to a timestamped backup;
    ``log`` gets one line per file. Returns the backups."""
    folder = Path(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backups = []
    for name in names:
        path = folder / name
        if path.is_file():
            target = backup_name(path, stamp)
            os.replace(path, target)
            log(f"kept the existing {path} as {target.name}")
            backups.append(target)
    return backups


def prepare_output_dir(
    folder: str | Path, names: Iterable[str], log: Callable[[str], None]
) -> Path:
    """Create ``folder``, remove temporary files a killed run left there, and back up the
    files of ``names`` that would be replaced."""
    folder = check_output_dir(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(folder, f"cannot create the output folder ({exc.strerror})") from None
    names = list(names)
    for name in names:
        if (folder / name).is_dir():
            raise OutputPathError(folder / name, "is a folder where an output file goes")
    for stale in remove_stale_temps(folder):
        log(f"removed {stale.name}, left by an interrupted run")
    back_up_existing(folder, names, log)
    return folder
