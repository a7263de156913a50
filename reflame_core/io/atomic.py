"""Atomic output files: every file the product writes goes through a temporary file in the
same folder and ``os.replace``, so a crash or kill never leaves a half-written result.

Temporary files are named ``.<name>.<random>.reflame-tmp``; any left by a hard kill (which
no ``finally`` survives) are removed by ``remove_stale_temps`` at the next run into that
folder. They are created with mode 0666 minus the umask, like any file the user writes.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".reflame-tmp"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it over
    ``path``. On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was. Returns ``path``."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        # O_EXCL + 0o666: a fresh file whose mode follows the umask (mkstemp would give 0600).
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8 into ``path``, atomically."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, recursively, so the
    result is valid JSON (which has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: str | Path, doc: Any) -> Path:
    """``doc`` as indented JSON (non-finite numbers written as null), atomically."""
    return write_text_atomic(path, json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files of ours left in ``folder`` by a killed run; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
