"""Small drawing helpers shared by the panels."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.dialogs import PathField

RED = (1.0, 0.35, 0.3, 1.0)
GREEN = (0.4, 0.9, 0.4, 1.0)
GREY = (0.6, 0.6, 0.6, 1.0)
AMBER = (1.0, 0.75, 0.3, 1.0)


def button(label: str, enabled: bool = True) -> bool:
    """A button that can be greyed out; returns whether it was clicked (and enabled)."""
    psim.BeginDisabled(not enabled)
    clicked = psim.Button(label)
    psim.EndDisabled()
    return clicked and enabled


def path_field(label: str, field: PathField, action: str) -> bool:
    """Text field + "..." (native dialog) + action button. True when a path was chosen
    (``field.take()`` then returns it)."""
    psim.PushID(label)
    # Leave room for the label and both buttons, whatever their text, so none is cut off.
    extra = sum(psim.CalcTextSize(t)[0] for t in (label, "...", action)) + 6 * 8
    psim.SetNextItemWidth(-max(extra, 60.0))
    changed, field.text = psim.InputText(label, field.text)
    psim.SameLine()
    if psim.Button("...") and not field.waiting:
        field.browse()
    psim.SameLine()
    if psim.Button(action):
        field.submit_text()
    if field.waiting:
        psim.TextColored(GREY, "waiting for the file dialog...")
    elif field.dialog_error:
        psim.TextColored(GREY, field.dialog_error)
    psim.PopID()
    field.poll()
    return field.has_choice
