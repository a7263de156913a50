"""Error / warning / info banner at the top of the panel."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import AMBER, GREEN, RED
from reflame_app.state.messages import MessageLog


def draw_banner(log: MessageLog) -> None:
    msg = log.banner
    if msg is None:
        return
    colour, prefix = {"error": (RED, "Error: "), "warning": (AMBER, "Warning: ")}.get(
        msg.level, (GREEN, ""))
    psim.PushStyleColor(psim.ImGuiCol_Text, colour)
    psim.TextWrapped(prefix + msg.text[:400])
    psim.PopStyleColor()
    if psim.SmallButton("dismiss"):
        log.dismiss()
    psim.Separator()
