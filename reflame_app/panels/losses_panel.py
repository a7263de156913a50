"""Loss panel: every loss term over iterations, one ImPlot per stage. The terms are listed
once as coloured checkboxes (with their latest value) instead of a legend inside each plot,
so no plot area is covered and no name is cut off."""

from __future__ import annotations

import polyscope.imgui as psim
import polyscope.implot as implot

from reflame_app.state.losses import LossPlotState

PLOT_HEIGHT = 240


def draw_losses(losses: LossPlotState) -> None:
    if not psim.CollapsingHeader("Losses"):
        return
    _, losses.log_scale = psim.Checkbox("log scale", losses.log_scale)
    psim.SameLine()
    psim.Text("stages:")
    for stage in losses.stages:
        psim.SameLine()
        _, losses.show_stage[stage] = psim.Checkbox(stage, losses.show_stage.get(stage, True))
    latest: dict[str, float] = {}
    for stage in losses.stages:
        latest.update(losses.latest(stage))
    flags = psim.ImGuiTableFlags_SizingStretchSame
    if losses.all_terms and psim.BeginTable("loss terms", 2, flags):
        for term in losses.all_terms:
            psim.TableNextColumn()
            psim.PushStyleColor(psim.ImGuiCol_Text, losses.term_color(term))
            _, losses.show_term[term] = psim.Checkbox(f"{term}##term", losses.show_term[term])
            psim.PopStyleColor()
            if term in latest:
                psim.SameLine()
                psim.Text(f"{latest[term]:.3g}")
        psim.EndTable()
    for stage in losses.stages:
        if not losses.show_stage.get(stage, True):
            continue
        if implot.BeginPlot(f"{stage}##losses", (-1, PLOT_HEIGHT), implot.ImPlotFlags_NoLegend):
            implot.SetupAxes("iteration", "loss", implot.ImPlotAxisFlags_AutoFit,
                             implot.ImPlotAxisFlags_AutoFit)
            if losses.log_scale:
                implot.SetupAxisScale(implot.ImAxis_Y1, implot.ImPlotScale_Log10)
            for term, x, y in losses.plot_data(stage):
                implot.SetNextLineStyle(losses.term_color(term), 2.0)
                implot.PlotLine(term, x, y)
            implot.EndPlot()
