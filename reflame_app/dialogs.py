"""Native open/save/folder dialogs via imgui-bundle's portable_file_dialogs, when usable.

Polyscope and imgui-bundle carry separate ImGui copies that cannot share a context, so only
the ImGui-free ``portable_file_dialogs`` part of imgui-bundle is used. It runs an external
helper (zenity/kdialog on Linux); without a display or helper, ``available()`` is False and
the panels fall back to a text path field. Dialogs are asynchronous: poll ``result()`` each
frame so the GUI never blocks.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any


def _pfd() -> Any | None:
    try:
        from imgui_bundle import portable_file_dialogs
    except ImportError:
        return None
    return portable_file_dialogs


def available() -> bool:
    """Whether a native dialog can be shown here (module present, and on Linux a display
    and one of the helper programs that portable_file_dialogs drives)."""
    if _pfd() is None:
        return False
    if sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False
        return any(shutil.which(h) for h in ("zenity", "kdialog", "matedialog", "qarma"))
    return True


class PendingDialog:
    """One open native dialog; ``poll()`` returns None while it is open, then the chosen path
    ("" when cancelled)."""

    def __init__(self, kind: str, title: str, default_path: str = "",
                 filters: list[str] | None = None):
        pfd = _pfd()
        if pfd is None:
            raise RuntimeError("imgui_bundle.portable_file_dialogs is not installed")
        self.kind = kind
        if kind == "folder":
            self._dlg = pfd.select_folder(title, default_path)
        elif kind == "open":
            self._dlg = pfd.open_file(title, default_path, filters or ["All files", "*"])
        elif kind == "save":
            self._dlg = pfd.save_file(title, default_path, filters or ["All files", "*"])
        else:
            raise ValueError(f"unknown dialog kind {kind!r}")

    def poll(self) -> str | None:
        if not self._dlg.ready(0):
            return None
        res = self._dlg.result()
        if isinstance(res, list):
            return res[0] if res else ""
        return res or ""


class PathField:
    """A path the user picks: native dialog when available, always also a text field.

    ``text`` is the editable field; ``take()`` returns a newly chosen path once.
    """

    def __init__(self, kind: str, title: str, filters: list[str] | None = None,
                 text: str = ""):
        self.kind = kind
        self.title = title
        self.filters = filters
        self.text = text
        self._pending: PendingDialog | None = None
        self._chosen: Path | None = None
        self.dialog_error: str | None = None

    def browse(self) -> None:
        """Open the native dialog; on failure remember why (the text field stays usable)."""
        if not available():
            self.dialog_error = "no native file dialog here; type the path instead"
            return
        try:
            self._pending = PendingDialog(self.kind, self.title, self.text, self.filters)
        except Exception as exc:  # noqa: BLE001 - any dialog failure falls back to the text field
            self.dialog_error = f"file dialog failed ({exc}); type the path instead"

    @property
    def waiting(self) -> bool:
        return self._pending is not None

    def submit_text(self) -> None:
        if self.text.strip():
            self._chosen = Path(self.text.strip()).expanduser()

    def poll(self) -> None:
        if self._pending is None:
            return
        res = self._pending.poll()
        if res is None:
            return
        self._pending = None
        if res:
            self.text = res
            self._chosen = Path(res)

    @property
    def has_choice(self) -> bool:
        return self._chosen is not None

    def take(self) -> Path | None:
        self.poll()
        chosen, self._chosen = self._chosen, None
        return chosen
