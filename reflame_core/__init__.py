"""ReFLAME core: everything that computes (I/O, rendering, fitting, landmarks, texture).

Importable without any GUI package; ``reflame_app`` builds on it, never the reverse.

The public API (README, "Python API")::

    import reflame_core as rf

    result = rf.fit_scan("scan.obj", "fit/", config=rf.FitConfig.preset("fast"))
    result.paths["fit.obj"], result.report["distances_scan_units"], result.timings["total"]

Names are imported on first use, so ``import reflame_core`` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_scan": "reflame_core.io.scan",
    "Scan": "reflame_core.io.mesh",
    "FitConfig": "reflame_core.fit.config",
    "fit_scan": "reflame_core.fit.run",
    "FitResult": "reflame_core.fit.run",
    "FitProgress": "reflame_core.fit.progress",
    "FlameAssets": "reflame_core.fit.setup",
    "load_flame": "reflame_core.fit.setup",
}

__all__ = [
    "FitConfig", "FitProgress", "FitResult", "FlameAssets", "Scan", "__version__", "fit_scan",
    "load_flame", "load_scan",
]

if TYPE_CHECKING:
    from reflame_core.fit.config import FitConfig
    from reflame_core.fit.progress import FitProgress
    from reflame_core.fit.run import FitResult, fit_scan
    from reflame_core.fit.setup import FlameAssets, load_flame
    from reflame_core.io.mesh import Scan
    from reflame_core.io.scan import load_scan


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reflame_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
