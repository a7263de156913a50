"""Display panel: how the scan, FLAME overlay, residual colour maps and cameras are drawn."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import GREY
from reflame_app.scene import SceneSync


def draw_display(scene: SceneSync) -> None:
    style = scene.style
    if not psim.CollapsingHeader("Display", psim.ImGuiTreeNodeFlags_DefaultOpen):
        return
    _, style.show_scan = psim.Checkbox("scan", style.show_scan)
    psim.SameLine()
    _, style.show_fit = psim.Checkbox("FLAME overlay", style.show_fit)
    psim.SameLine()
    _, style.wireframe = psim.Checkbox("wireframe", style.wireframe)
    _, style.show_cameras = psim.Checkbox("view frusta", style.show_cameras)
    psim.SameLine()
    _, style.show_frame = psim.Checkbox("up/front arrows", style.show_frame)
    _, style.landmarks_by_confidence = psim.Checkbox("landmarks by confidence",
                                                     style.landmarks_by_confidence)
    if psim.IsItemHovered():
        psim.SetTooltip("Detected landmarks: red and large = low confidence, amber, green and "
                        "small = high; edited ones orange; magenta ring = the fit contradicts "
                        "it. Off: detected blue, edited orange.")
    psim.SetNextItemWidth(200)
    _, style.transparency = psim.SliderFloat("FLAME opacity", style.transparency, 0.05, 1.0)
    psim.Text("Residual colour maps:")
    _, style.show_distances = psim.Checkbox("on the fit (to scan)", style.show_distances)
    psim.SameLine()
    _, style.show_scan_distances = psim.Checkbox("on the scan (to fit)",
                                                 style.show_scan_distances)
    if style.show_distances or style.show_scan_distances:
        _, style.auto_range = psim.Checkbox("robust range (98th percentile)", style.auto_range)
        if not style.auto_range:
            psim.SetNextItemWidth(200)
            _, style.max_distance = psim.SliderFloat("colour map max", style.max_distance,
                                                     0.005, 0.5)
        ranges = ", ".join(f"{k} 0..{v:.3g}" for k, v in scene.distance_ranges.items())
        if ranges:
            psim.TextColored(GREY, f"range: {ranges} (canonical units)")
    if psim.Button("Frame the head"):
        scene.frame_request = True
