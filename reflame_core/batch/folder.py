"""A scan's output folder appears only when its fit is complete: the fit writes into a hidden
staging folder beside it (``.NAME.tmp-XXXX``), renamed to ``NAME`` as the last step. Killing
a batch at any moment leaves staging folders (removed by the next run) but never a ``NAME``
folder that looks complete and is not.

An existing ``NAME`` folder being replaced (``--force``, changed inputs or config, a failed
fit) is kept as ``NAME.YYYYmmdd-HHMMSS.bak``, as every reflame command keeps the files it
would overwrite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

STAGING_MARK = ".tmp-"


def staging_dir(out_root: Path, name: str) -> Path:
    """A new, empty hidden folder in ``out_root`` (same file system as ``out_root/name``)."""
    out_root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{name}{STAGING_MARK}", dir=out_root))
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay on the published folder
    return path


def publish(staging: Path, final: Path) -> Path | None:
    """Rename ``staging`` to ``final``; an existing ``final`` is first renamed to a
    timestamped backup, which is returned."""
    backup = None
    if final.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = final.with_name(f"{final.name}.{stamp}.bak")
        n = 1
        while backup.exists():
            backup = final.with_name(f"{final.name}.{stamp}-{n}.bak")
            n += 1
        os.replace(final, backup)
    os.replace(staging, final)
    return backup


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(out_root: Path) -> list[Path]:
    """Remove staging folders an interrupted batch left in ``out_root``; returns them.
    Only for a batch's start: a running batch's workers write into theirs."""
    if not out_root.is_dir():
        return []
    stale = [p for p in out_root.iterdir()
             if p.is_dir() and p.name.startswith(".") and STAGING_MARK in p.name]
    for p in stale:
        discard(p)
    return stale
