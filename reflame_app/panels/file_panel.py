"""File panel: open a scan, FLAME folder, save/load session, export results."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.dialogs import PathField
from reflame_app.panels.widgets import AMBER, GREY, button, path_field
from reflame_app.state.app_state import AppState

SCAN_FILTERS = ["Scans", "*.obj *.ply *.glb *.gltf", "All files", "*"]
SESSION_FILTERS = ["Sessions", "*.json", "All files", "*"]


class FilePanel:
    def __init__(self) -> None:
        self.scan = PathField("open", "Open a head scan", SCAN_FILTERS)
        self.flame = PathField("folder", "Select the FLAME asset folder")
        self.session_save = PathField("save", "Save session", SESSION_FILTERS)
        self.session_load = PathField("open", "Load session", SESSION_FILTERS)
        self.export = PathField("folder", "Export results to folder")

    def draw(self, app: AppState) -> None:
        if not psim.CollapsingHeader("File", psim.ImGuiTreeNodeFlags_DefaultOpen):
            return
        if path_field("scan", self.scan, "Open"):
            with app.messages.guard("Opening the scan"):
                app.open_scan(self.scan.take())
        if app.scan is not None:
            psim.Text(f"Scan: {app.scan.path}  ({len(app.scan.vertices)} vertices)")
            for note in app.scan.notes:  # what loading went without or changed stays in sight
                psim.PushTextWrapPos(0.0)
                psim.TextColored(AMBER, note)
                psim.PopTextWrapPos()
        if path_field("FLAME dir", self.flame, "Set"):
            with app.messages.guard("Setting the FLAME folder"):
                app.set_flame_dir(self.flame.take())
        psim.Text(f"FLAME: {app.flame_dir or 'not set'}")
        if path_field("save session", self.session_save, "Save"):
            with app.messages.guard("Saving the session"):
                path = app.save_session(self.session_save.take())
                app.messages.info(f"Session saved to {path}")
        if path_field("load session", self.session_load, "Load"):
            with app.messages.guard("Loading the session"):
                app.load_session(self.session_load.take())
        ok, why = export_ready(app)
        psim.BeginDisabled(not ok)
        chosen = path_field("export to", self.export, "Export")
        psim.EndDisabled()
        if not ok:
            psim.TextColored(GREY, why)
        if chosen:
            self.start_export(app)
        if button("Autosave now", app.scan is not None):
            path = app.autosave(force=True)
            if path is not None:
                app.messages.info(f"Autosaved to {path}")

    def start_export(self, app: AppState) -> None:
        """Start the export of the chosen folder (it finishes on the fitting thread; ``poll``
        reports it). Nothing is started while ``export_ready`` says no."""
        out = self.export.take()
        ok, why = export_ready(app)
        if out is None or not ok:
            if out is not None:
                app.messages.error(f"Export: {why}")
            return
        with app.messages.guard("Exporting"):
            app.export(out)
            app.messages.info(f"Exporting to {out}...")


def export_ready(app: AppState) -> tuple[bool, str]:
    """Whether there is something to export now, and if not, why (shown under the field).

    The export writes the live session's outputs, so it needs a fit session with at least one
    snapshot; a fit loaded from a session file alone cannot be exported."""
    if app.controller is None:
        return False, "nothing to export yet: run a fit first"
    if app.snapshot is None:
        return False, "nothing to export yet: the fit has not produced a result"
    if app.export_pending is not None:
        return False, f"exporting to {app.export_pending}..."
    return True, ""
