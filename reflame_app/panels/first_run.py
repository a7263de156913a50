"""First-run panel: the FLAME files needed, where to get them, a folder picker."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import GREEN, GREY, RED, path_field
from reflame_app.state.app_state import AppState
from reflame_app.state.first_run import FLAME_URL


def draw_first_run(app: AppState) -> None:
    fr = app.first_run
    psim.TextWrapped(
        "Welcome to ReFLAME Studio. Fitting needs the FLAME model files, which cannot be "
        f"shipped with the app: register and download FLAME at {FLAME_URL}, then select the "
        "folder holding these files:")
    for need in fr.needs():
        ok = need.satisfied
        psim.TextColored(GREEN if ok else RED,
                         f"[{'x' if ok else ' '}] {need.what}" + ("" if ok else ": missing"))
        for k, option in enumerate(need.options):
            lead = ("either " if k == 0 else "or     ") if len(need.options) > 1 else ""
            psim.Text(f"      {lead}")
            for j, row in enumerate(option):
                psim.SameLine()
                if j:
                    psim.Text("+")
                    psim.SameLine()
                psim.TextColored(GREEN if row.present else GREY,
                                 row.file + ("" if row.present else " (not found)"))
                if psim.IsItemHovered():
                    psim.SetTooltip(row.description)
    if fr.checked is not None:
        psim.Text(f"Checked folder: {fr.checked}")
    if path_field("FLAME folder", fr.folder, "Use folder"):
        folder = fr.folder.take()
        with app.messages.guard("Setting the FLAME folder"):
            app.set_flame_dir(folder)
    psim.Separator()
