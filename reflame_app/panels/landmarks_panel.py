"""Landmarks panel: detect, what to check first (the landmarks the fit contradicts, the
least confident), table (group, confidence, provenance, enabled, weight, fit weight),
click-to-move, disable/reset, undo/redo, group weights."""

from __future__ import annotations

import numpy as np
import polyscope.imgui as psim

from reflame_app.panels.widgets import GREY, button
from reflame_app.scene import OUTLIER_COLOR
from reflame_app.state.app_state import AppState
from reflame_app.state.confidence import confidence_colors
from reflame_app.state.landmark_editor import ORDERS, LandmarkEditorState
from reflame_app.state.manual_landmarks import diagram_points
from reflame_core.landmarks.definitions import GROUPS

EDITED = (1.0, 0.6, 0.1, 1.0)
DETECTED = (0.4, 0.7, 1.0, 1.0)
OUTLIER = (*OUTLIER_COLOR, 1.0)
ORDER_LABELS = ("by index", "least confident first")


def weight_text(weight: float) -> str:
    """A robust weight as the artist reads it: "<0.01" for a landmark the fit ignores."""
    return "<0.01" if weight < 0.01 else f"{weight:.2f}"


def conf_colour(confidence: float) -> tuple[float, float, float, float]:
    return (*confidence_colors([confidence])[0], 1.0)


def draw_landmarks(app: AppState) -> None:
    if not psim.CollapsingHeader("Landmarks", psim.ImGuiTreeNodeFlags_DefaultOpen):
        return
    ed = app.editor
    if button("Detect landmarks", app.scan is not None and not app.detecting):
        with app.messages.guard("Detecting landmarks"):
            app.detect_landmarks(wait=False)
    psim.SameLine()
    _, app.place_by_fit = psim.Checkbox("then place by a FLAME fit", app.place_by_fit)
    if psim.IsItemHovered():
        psim.SetTooltip("After detection, move the 68 to where a quick FLAME fit of the scan "
                        "puts them: the jaw line holds far better than the detector's "
                        "(seconds on a GPU, tens of seconds on a CPU)")
    draw_manual_placement(app)
    if ed.landmarks is None:
        psim.TextColored(GREY, "no landmarks yet: detect them, or place them by hand")
        return
    lms = ed.landmarks
    if button("Undo", lms.can_undo):
        ed.undo()
    psim.SameLine()
    if button("Redo", lms.can_redo):
        ed.redo()
    if ed.selected is not None:
        i = ed.selected
        psim.Text(f"Selected: {i} {lms.names[i]}")
        psim.SameLine()
        if ed.manual is not None:
            pass
        elif ed.placing:
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
    draw_outliers(ed)
    if psim.TreeNode("group weights"):
        for g in GROUPS:
            changed, w = psim.InputFloat(g, float(lms.group_weights[g]), 0.1, 1.0, "%.2f")
            if changed:
                with app.messages.guard("Setting a group weight"):
                    ed.set_group_weight(g, max(0.0, w))
        psim.TreePop()
    psim.SetNextItemWidth(170)
    changed, k = psim.Combo("order", ORDERS.index(ed.order), list(ORDER_LABELS))
    if changed:
        ed.set_order(ORDERS[k])
    psim.SameLine()
    psim.SetNextItemWidth(110)
    _, ed.max_confidence = psim.SliderFloat("max conf", ed.max_confidence, 0.0, 1.0, "%.2f")
    if psim.IsItemHovered():
        psim.SetTooltip("List only detected landmarks at or below this confidence "
                        "(1: list all)")
    flags = (psim.ImGuiTableFlags_RowBg | psim.ImGuiTableFlags_ScrollY
             | psim.ImGuiTableFlags_Borders | psim.ImGuiTableFlags_SizingFixedFit)
    if psim.BeginTable("landmark table", 6, flags, (0, 220)):
        # The group is in the row's tooltip: the columns leave room for the fit's weight.
        for name, width in (("#  name", 140), ("conf", 34), ("source", 52), ("on", 24),
                            ("weight", 44), ("fit", 40)):
            psim.TableSetupColumn(name, psim.ImGuiTableColumnFlags_WidthFixed, width)
        psim.TableHeadersRow()
        for row in ed.rows():
            psim.PushID(str(row.index))
            psim.TableNextRow()
            psim.TableNextColumn()
            if psim.Selectable(f"{row.index:2d} {row.name}", ed.selected == row.index):
                ed.select(row.index, focus=True)
            if psim.IsItemHovered():
                psim.SetTooltip(f"{row.index} {row.name} ({row.group})")
            psim.TableNextColumn()
            if row.placed and row.provenance != "edited":
                psim.TextColored(conf_colour(row.confidence), f"{row.confidence:.2f}")
            else:
                psim.TextColored(GREY, f"{row.confidence:.2f}" if row.placed else "-")
            psim.TableNextColumn()
            if row.placed:
                edited = row.provenance == "edited"
                psim.TextColored(EDITED if edited else DETECTED,
                                 row.provenance if edited else ed.unedited_label)
            else:
                psim.TextColored(GREY, "-")
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
            psim.TableNextColumn()
            if row.outlier_weight is not None:
                psim.TextColored(OUTLIER, weight_text(row.outlier_weight))
                if psim.IsItemHovered():
                    psim.SetTooltip("the fit contradicts this landmark: its robust weight")
            psim.PopID()
        psim.EndTable()


def draw_outliers(ed: LandmarkEditorState) -> None:
    """"Look here first": the landmarks the fit contradicts (largest residual first), with
    their robust weight; a click selects one and turns the view to it."""
    outliers = ed.outliers
    if not outliers:
        return
    psim.TextColored(OUTLIER, f"Look here first: the fit contradicts {len(outliers)} "
                     "landmark" + ("s" if len(outliers) > 1 else ""))
    if psim.IsItemHovered():
        psim.SetTooltip("Ringed in magenta in the view. Move each to where it belongs (an "
                        "edited landmark is trusted), or disable it.")
    for o in outliers:
        label = (f"{o.index:2d} {o.name}: off by {100 * o.residual:.1f}% of the head, "
                 f"weight {weight_text(o.weight)}")
        if psim.Selectable(f"{label}##outlier{o.index}", ed.selected == o.index):
            ed.select(o.index, focus=True)


_DIAGRAM_CACHE: dict[int, np.ndarray] = {}


def draw_manual_placement(app: AppState) -> None:
    """Buttons to place landmarks by hand; while placing, what to click next and a small
    frontal picture of the 68 points with the next one highlighted."""
    ed = app.editor
    scan = app.scan_canonical
    if ed.manual is None:
        if button("Place all 68 by hand", scan is not None):
            ed.start_manual(len(scan.faces), "all")
        psim.SameLine()
        if button("Place 5 key points", scan is not None and app.assets_ready):
            ed.start_manual(len(scan.faces), "key5")
        if psim.IsItemHovered():
            psim.SetTooltip("Click the eye outer corners, nose tip and mouth corners; the "
                            "other landmarks are initialised from the FLAME template")
        return
    psim.TextColored(EDITED, ed.manual_hint() or "")
    if psim.SmallButton("skip this one"):
        ed.skip_manual()
    psim.SameLine()
    if psim.SmallButton("stop placing"):
        ed.stop_manual()
    if app.template is not None and app.embedding is not None and ed.manual is not None:
        key = id(app.template)
        if key not in _DIAGRAM_CACHE:
            _DIAGRAM_CACHE[key] = diagram_points(app.template.vertices, app.template.faces,
                                                 app.embedding)
        draw_diagram(_DIAGRAM_CACHE[key], ed.manual.current, set(ed.manual.done))


def draw_diagram(points: np.ndarray, current: int | None, done: set[int],
                 size: float = 170.0) -> None:
    """The 68 points in a size x size box: the next one large and red, placed ones orange."""
    x0, y0 = psim.GetCursorScreenPos()
    dl = psim.GetWindowDrawList()
    dl.AddRectFilled((x0, y0), (x0 + size, y0 + size), psim.GetColorU32((0.1, 0.1, 0.12, 1.0)))
    pad = 8.0
    for i, (u, v) in enumerate(points):
        c = (x0 + pad + u * (size - 2 * pad), y0 + pad + v * (size - 2 * pad))
        if i == current:
            continue
        col = EDITED if i in done else (0.75, 0.75, 0.75, 1.0)
        dl.AddCircleFilled(c, 2.0, psim.GetColorU32(col))
    if current is not None:
        u, v = points[current]
        c = (x0 + pad + u * (size - 2 * pad), y0 + pad + v * (size - 2 * pad))
        dl.AddCircleFilled(c, 5.0, psim.GetColorU32((1.0, 0.15, 0.1, 1.0)))
        dl.AddCircle(c, 9.0, psim.GetColorU32((1.0, 1.0, 1.0, 1.0)))
    psim.Dummy((size, size))
