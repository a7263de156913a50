"""Fitting panel: stages with status and progress, run commands, stage parameters."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import GREY, RED, button
from reflame_app.state.app_state import AppState
from reflame_app.state.fit_control import stage_rows


def draw_fit(app: AppState) -> None:
    if not psim.CollapsingHeader("Fitting", psim.ImGuiTreeNodeFlags_DefaultOpen):
        return
    fc = app.fit
    ready = app.scan is not None and app.assets_ready
    if button("New fit session" if app.controller is None else "Restart from scratch", ready):
        with app.messages.guard("Starting the fit"):
            app.start_session()
    psim.Text(f"State: {fc.state}")
    with app.messages.guard("Fit command"):
        for label, action in (("Start", "start"), ("Pause", "pause"), ("Resume", "resume"),
                              ("Step 1", "step1")):
            if button(label, fc.can("step" if action == "step1" else action)):
                fc.command("step", 1) if action == "step1" else fc.command(action)
            psim.SameLine()
        psim.SetNextItemWidth(80)
        _, fc.step_n = psim.InputInt("##n", fc.step_n, 0, 0)
        fc.step_n = max(1, fc.step_n)
        psim.SameLine()
        if button(f"Step {fc.step_n}", fc.can("step")):
            fc.command("step")
        if button("Skip stage", fc.can("skip")):
            fc.command("skip")
        psim.SameLine()
        if button("Restart stage", fc.can("restart")):
            fc.command("restart")
    snap = app.snapshot
    rows = stage_rows(snap.stages if snap is not None else [], fc.state)
    flags = psim.ImGuiTableFlags_SizingFixedFit | psim.ImGuiTableFlags_RowBg
    if rows and psim.BeginTable("stages", 3, flags):
        psim.TableSetupColumn("stage", psim.ImGuiTableColumnFlags_WidthFixed, 110)
        psim.TableSetupColumn("status", psim.ImGuiTableColumnFlags_WidthFixed, 70)
        psim.TableSetupColumn("progress", psim.ImGuiTableColumnFlags_WidthStretch)
        for row in rows:
            psim.TableNextRow()
            psim.TableNextColumn()
            marker = ">" if snap is not None and snap.stage == row.name else " "
            psim.Text(f"{marker} {row.name}")
            psim.TableNextColumn()
            psim.Text(row.status)
            psim.TableNextColumn()
            why = f" ({row.end_reason})" if row.end_reason else ""
            psim.ProgressBar(row.progress, (-1, 0), f"{row.iteration}/{row.num_steps}{why}")
        psim.EndTable()
    for stage, params in fc.params.items():
        if not psim.TreeNode(f"{stage} parameters"):
            continue
        for name in params:
            key = (stage, name)
            psim.SetNextItemWidth(120)
            _, text = psim.InputText(f"{name}##{stage}", fc.text[key])
            fc.text[key] = text
            if psim.IsItemDeactivatedAfterEdit():
                fc.edit_param(stage, name, text)
            if key in fc.param_error:
                psim.TextColored(RED, fc.param_error[key])
        psim.TreePop()
    if not fc.params:
        psim.TextColored(GREY, "parameters appear once a fit session exists")
