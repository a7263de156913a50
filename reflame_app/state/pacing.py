"""``FramePacer``: how often the studio redraws, so that it leaves the machine to the fit.

Polyscope's own frame limiter busy-waits (a core at 100% even at 2 fps under software GL),
so the studio turns it off and sleeps in its frame callback instead. The rate follows what
the user sees change: fast while they interact, moderate while the fit or detection runs,
slow when nothing happens. While the fit runs, drawing is also held to a share of one core:
every frame drawn costs the fit (on a GPU the window's OpenGL and the fit's CUDA share the
chip: 20 fps cost the fit 15%, 10 fps 6%; under software GL one frame of the live overlay
costs 50-80 ms of CPU: benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FramePacer:
    """Frame rates (frames per second), how long input counts as interaction (seconds), and
    the share of one core that drawing may take while the fit runs."""

    interactive_fps: float = 60.0
    working_fps: float = 12.0
    idle_fps: float = 5.0
    min_working_fps: float = 2.0  # progress must still be seen to move
    interaction_s: float = 1.0
    draw_budget: float = 0.25
    _last_input: float = -1e9
    _next_frame: float = 0.0
    _draw_s: float = 0.0

    def note_draw(self, seconds: float) -> None:
        """How long the last frame took to draw (Polyscope's part, outside the callback)."""
        self._draw_s = seconds if self._draw_s == 0.0 else 0.8 * self._draw_s + 0.2 * seconds

    @property
    def draw_seconds(self) -> float:
        """Recent time to draw one frame (smoothed)."""
        return self._draw_s

    def fps(self, now: float, *, input_seen: bool, working: bool) -> float:
        """The rate for this frame: ``input_seen`` (mouse or keys this frame), ``working``
        (the fit runs or the worker is busy, so the picture changes by itself)."""
        if input_seen:
            self._last_input = now
        if now - self._last_input < self.interaction_s:
            return self.interactive_fps
        if not working:
            return self.idle_fps
        affordable = self.draw_budget / self._draw_s if self._draw_s > 0 else self.working_fps
        return max(self.min_working_fps, min(self.working_fps, affordable))

    def delay(self, now: float, fps: float) -> float:
        """Seconds to sleep so that frames come at ``fps`` (no catching up after a slow
        frame: the next one is due a full period after this one)."""
        period = 1.0 / fps
        due = self._next_frame
        self._next_frame = max(due, now) + period
        if due - now > period:  # the rate went up: do not sit out the old, longer period
            self._next_frame = now + period
            return 0.0
        return max(0.0, due - now)
