"""Display panel: how the scan, FLAME overlay, distances and cameras are drawn."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.scene import OverlayStyle


def draw_display(style: OverlayStyle) -> None:
    if not psim.CollapsingHeader("Display"):
        return
    _, style.show_scan = psim.Checkbox("scan", style.show_scan)
    psim.SameLine()
    _, style.wireframe = psim.Checkbox("FLAME wireframe", style.wireframe)
    psim.SameLine()
    _, style.show_cameras = psim.Checkbox("cameras", style.show_cameras)
    _, style.transparency = psim.SliderFloat("FLAME opacity", style.transparency, 0.05, 1.0)
    _, style.show_distances = psim.Checkbox("scan distance colour map", style.show_distances)
    if style.show_distances:
        _, style.max_distance = psim.SliderFloat("colour map max", style.max_distance, 0.005, 0.5)
