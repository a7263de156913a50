"""FramePacer: the studio's frame rate follows interaction and work."""

from __future__ import annotations

import pytest

from reflame_app.state.pacing import FramePacer


def test_rate_follows_input_then_work_then_idle() -> None:
    p = FramePacer(interactive_fps=60, working_fps=20, idle_fps=5, interaction_s=1.0)
    assert p.fps(10.0, input_seen=True, working=False) == 60
    assert p.fps(10.5, input_seen=False, working=False) == 60  # still interacting
    assert p.fps(11.2, input_seen=False, working=True) == 20
    assert p.fps(11.3, input_seen=False, working=False) == 5


def test_delays_space_frames_and_react_at_once_to_a_faster_rate() -> None:
    p = FramePacer()
    assert p.delay(0.0, 5.0) == 0.0
    assert p.delay(0.01, 5.0) == pytest.approx(0.19)  # due at 0.2
    assert p.delay(0.2, 5.0) == pytest.approx(0.2)  # next due at 0.4
    assert p.delay(0.25, 60.0) == 0.0  # input: no waiting out the slow period
    assert p.delay(0.26, 60.0) == pytest.approx(0.25 + 1 / 60 - 0.26)
    assert p.delay(5.0, 60.0) == 0.0  # a slow frame is not caught up with a burst
    assert p.delay(5.0, 60.0) == pytest.approx(1 / 60)


def test_drawing_is_held_to_its_share_of_a_core_while_the_fit_runs() -> None:
    p = FramePacer(working_fps=12, min_working_fps=2, draw_budget=0.25)
    for _ in range(30):
        p.note_draw(0.075)  # software GL: 75 ms a frame
    assert p.fps(0.0, input_seen=False, working=True) == pytest.approx(0.25 / 0.075)
    assert p.fps(0.1, input_seen=True, working=True) == 60  # the user always gets frames
    for _ in range(30):
        p.note_draw(0.002)  # a GPU
    assert p.fps(5.0, input_seen=False, working=True) == 12
    for _ in range(30):
        p.note_draw(1.0)
    assert p.fps(10.0, input_seen=False, working=True) == 2
