"""Error / info banner at the top of the panel."""

from __future__ import annotations

import polyscope.imgui as psim

from reflame_app.panels.widgets import GREEN, RED
from reflame_app.state.messages import MessageLog


def draw_banner(log: MessageLog) -> None:
    msg = log.banner
    if msg is None:
        return
    psim.PushStyleColor(psim.ImGuiCol_Text, RED if msg.level == "error" else GREEN)
    psim.TextWrapped(("Error: " if msg.level == "error" else "") + msg.text[:400])
    psim.PopStyleColor()
    if psim.SmallButton("dismiss"):
        log.dismiss()
    psim.Separator()
