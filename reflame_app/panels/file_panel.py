"""File panel: open a scan, FLAME folder, save/load session, export results."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.dialogs import PathField
from reflame_app.panels.widgets import button, path_field
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
        psim.BeginDisabled(app.fitted_vertices is None)
        if path_field("export to", self.export, "Export"):
            with app.messages.guard("Exporting"):
                written = app.export(self.export.take())
                app.messages.info(f"Exported {len(written)} files")
        psim.EndDisabled()
        if button("Autosave now", app.scan is not None):
            path = app.autosave(force=True)
            if path is not None:
                app.messages.info(f"Autosaved to {path}")
