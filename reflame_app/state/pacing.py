"""``FramePacer``: how often the studio redraws, so that it leaves the CPU to the fit.

Polyscope's own frame limiter busy-waits (a core at 100% even at 2 fps under software GL),
so the studio turns it off and sleeps in its frame callback instead. The rate follows what
the user sees change: fast while they interact, moderate while the fit or detection runs,
slow when nothing happens. Every frame drawn while the fit runs costs the fit: on a GPU the
window's OpenGL and the fit's CUDA share the chip (20 fps cost the fit 15%, 10 fps 6%:
benchmarks/RESULTS.md), on a 2-core CPU software GL takes the cores.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FramePacer:
    """Frame rates (frames per second) and how long input counts as interaction (seconds)."""

    interactive_fps: float = 60.0
    working_fps: float = 12.0
    idle_fps: float = 5.0
    interaction_s: float = 1.0
    _last_input: float = -1e9
    _next_frame: float = 0.0

    def fps(self, now: float, *, input_seen: bool, working: bool) -> float:
        """The rate for this frame: ``input_seen`` (mouse or keys this frame), ``working``
        (the fit runs or the worker is busy, so the picture changes by itself)."""
        if input_seen:
            self._last_input = now
        if now - self._last_input < self.interaction_s:
            return self.interactive_fps
        return self.working_fps if working else self.idle_fps

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
