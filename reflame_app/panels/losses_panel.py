"""Loss panel: every loss term over iterations, one ImPlot per stage."""

from __future__ import annotations

import polyscope.imgui as psim
import polyscope.implot as implot

from reflame_app.state.losses import LossPlotState


def draw_losses(losses: LossPlotState) -> None:
    if not psim.CollapsingHeader("Losses"):
        return
    _, losses.log_scale = psim.Checkbox("log scale", losses.log_scale)
    for stage in losses.stages:
        _, losses.show_stage[stage] = psim.Checkbox(stage, losses.show_stage.get(stage, True))
        psim.SameLine()
    psim.NewLine()
    for stage in losses.stages:
        if not losses.show_stage.get(stage, True):
            continue
        if implot.BeginPlot(f"{stage}##losses", (-1, 200)):
            implot.SetupAxes("iteration", "loss", implot.ImPlotAxisFlags_AutoFit,
                             implot.ImPlotAxisFlags_AutoFit)
            if losses.log_scale:
                implot.SetupAxisScale(implot.ImAxis_Y1, implot.ImPlotScale_Log10)
            for term, x, y in losses.plot_data(stage):
                implot.PlotLine(term, x, y)
            implot.EndPlot()
