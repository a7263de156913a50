"""Landmarks panel: detect, table (group, confidence, provenance, enabled, weight),
click-to-move, disable/reset, undo/redo, group weights."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import GREY, button
from reflame_app.state.app_state import AppState
from reflame_core.landmarks.definitions import GROUPS

EDITED = (1.0, 0.6, 0.1, 1.0)
DETECTED = (0.4, 0.7, 1.0, 1.0)


def draw_landmarks(app: AppState) -> None:
    if not psim.CollapsingHeader("Landmarks"):
        return
    ed = app.editor
    if button("Detect landmarks", app.scan is not None and not app.detecting):
        with app.messages.guard("Detecting landmarks"):
            app.detect_landmarks(wait=False)
    if ed.landmarks is None:
        psim.TextColored(GREY, "no landmarks yet")
        return
    lms = ed.landmarks
    psim.SameLine()
    if button("Undo", lms.can_undo):
        ed.undo()
    psim.SameLine()
    if button("Redo", lms.can_redo):
        ed.redo()
    if ed.selected is not None:
        i = ed.selected
        psim.Text(f"Selected: {i} {lms.names[i]}")
        psim.SameLine()
        if ed.placing:
            psim.TextColored(EDITED, "click on the scan to place it")
            psim.SameLine()
            if psim.SmallButton("cancel"):
                ed.placing = False
        elif psim.SmallButton("move (click on scan)"):
            ed.select(i, place=True)
        psim.SameLine()
        if psim.SmallButton("reset"):
            with app.messages.guard("Resetting the landmark"):
                ed.reset(i)
    if psim.TreeNode("group weights"):
        for g in GROUPS:
            changed, w = psim.InputFloat(g, float(lms.group_weights[g]), 0.1, 1.0, "%.2f")
            if changed:
                with app.messages.guard("Setting a group weight"):
                    ed.set_group_weight(g, max(0.0, w))
        psim.TreePop()
    flags = psim.ImGuiTableFlags_RowBg | psim.ImGuiTableFlags_ScrollY | psim.ImGuiTableFlags_Borders
    if psim.BeginTable("landmark table", 6, flags, (0, 220)):
        for name in ("#  name", "group", "conf", "source", "on", "weight"):
            psim.TableSetupColumn(name)
        psim.TableHeadersRow()
        for row in ed.rows():
            psim.PushID(str(row.index))
            psim.TableNextRow()
            psim.TableNextColumn()
            if psim.Selectable(f"{row.index:2d} {row.name}", ed.selected == row.index):
                ed.select(row.index)
            psim.TableNextColumn()
            psim.Text(row.group)
            psim.TableNextColumn()
            psim.Text(f"{row.confidence:.2f}" if row.placed else "-")
            psim.TableNextColumn()
            psim.TextColored(EDITED if row.provenance == "edited" else DETECTED, row.provenance)
            psim.TableNextColumn()
            changed, on = psim.Checkbox("##on", row.enabled)
            if changed:
                with app.messages.guard("Enabling the landmark"):
                    ed.set_enabled(row.index, on)
            psim.TableNextColumn()
            psim.SetNextItemWidth(-1)
            changed, w = psim.InputFloat("##w", row.weight, 0.0, 0.0, "%.2f")
            if changed and psim.IsItemDeactivatedAfterEdit():
                with app.messages.guard("Setting the weight"):
                    ed.set_weight(row.index, max(0.0, w))
            psim.PopID()
        psim.EndTable()
