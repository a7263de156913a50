"""Orientation panel: the scan's frame (which of its axes are up and front) and the user's
corrections (quarter turns, flipping the front), with the yes/no a costly change needs."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import GREY, RED, button
from reflame_app.scene import FRONT_COLOR, UP_COLOR
from reflame_app.state.app_state import AppState
from reflame_app.state.frame import FRONT, UP, axis_name, scan_direction


def draw_frame(app: AppState) -> None:
    if not psim.CollapsingHeader("Orientation", psim.ImGuiTreeNodeFlags_DefaultOpen):
        return
    frame = app.frame
    if app.scan is None:
        psim.TextColored(GREY, "open a scan first")
        return
    psim.Text(f"Scan {frame.describe()}")
    if app.orienting:
        psim.TextColored(GREY, "Looking for the face to orient the scan...")
    psim.TextColored((*UP_COLOR, 1.0), "green arrow: up")
    psim.SameLine()
    psim.TextColored((*FRONT_COLOR, 1.0), "blue arrow: out of the face")
    psim.TextColored(GREY, "Wrong? Turn the scan until the arrows are right:")
    pending = frame.pending is not None
    for axis, tip in (("x", "tips the face up or down (nodding)"),
                      ("y", "turns the head left or right"),
                      ("z", "rolls the head onto its side")):
        if psim.Button(f"turn {axis} 90"):
            with app.messages.guard("Turning the scan"):
                app.turn_frame(axis)
        if psim.IsItemHovered():
            psim.SetTooltip(f"A quarter turn about the {axis} axis: {tip}")
        psim.SameLine()
    if psim.Button("flip front"):
        with app.messages.guard("Flipping the front"):
            app.flip_front()
    if psim.IsItemHovered():
        psim.SetTooltip("Half a turn about up: the face where the back of the head was")
    if frame.landmarks_stale:
        psim.TextColored(RED, "The landmarks were detected in another orientation.")
        if button("detect again", not app.detecting):
            with app.messages.guard("Detecting landmarks"):
                app.detect_landmarks(wait=False)
    if pending:
        draw_confirmation(app)


def draw_confirmation(app: AppState) -> None:
    """What the change would cost, and Apply / Cancel."""
    p = app.frame.pending
    found = "The face was found this way up: " if p.source == "auto" else ""
    psim.TextColored(RED, f"{found}Turn the scan to up {axis_name(scan_direction(p.frame, UP))}"
                     f", front {axis_name(scan_direction(p.frame, FRONT))}?")
    for cost in p.costs:
        psim.Bullet()
        psim.TextWrapped(cost)
    if psim.Button("Apply"):
        with app.messages.guard("Changing the orientation"):
            app.confirm_frame()
    psim.SameLine()
    if psim.Button("Cancel"):
        app.cancel_frame()
