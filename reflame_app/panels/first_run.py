"""First-run panel: the FLAME files needed, where to get them, a folder picker."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import GREEN, RED, path_field
from reflame_app.state.app_state import AppState
from reflame_app.state.first_run import FLAME_URL


def draw_first_run(app: AppState) -> None:
    fr = app.first_run
    psim.TextWrapped(
        "Welcome to ReFLAME Studio. Fitting needs the FLAME model files, which cannot be "
        f"shipped with the app: register and download FLAME at {FLAME_URL}, then select the "
        "folder holding these files:")
    for row in fr.rows:
        psim.TextColored(GREEN if row.present else RED,
                         f"  [{'x' if row.present else ' '}] {row.file}")
        psim.SameLine()
        psim.TextWrapped(f"- {row.description}")
    if fr.checked is not None:
        psim.Text(f"Checked folder: {fr.checked}")
    if path_field("FLAME folder", fr.folder, "Use folder"):
        folder = fr.folder.take()
        with app.messages.guard("Setting the FLAME folder"):
            app.set_flame_dir(folder)
    psim.Separator()
