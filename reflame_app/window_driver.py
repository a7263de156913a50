"""``WindowDriver``: runs a scripted session inside the studio's real ``ps.show()`` loop.

For the real-window test and the GUI benchmark: the script is a generator that acts on the
studio between frames (``yield`` = let a frame be drawn) and drives the window through the
X server with ``xdotool``, so every event takes the path a user's would. Needs a display
(Xvfb) and ``xdotool``; without X (Polyscope's EGL backend on a GPU server) drags turn the
view from the script instead, and frames are ticked by a loop.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Generator, Iterator

import numpy as np
import polyscope as ps

from reflame_app.main import Studio

Script = Callable[["WindowDriver"], Generator[None, None, None]]


class WindowDriver:
    """Calls ``studio.frame`` every frame, then advances ``script`` by one ``yield``; ends
    the show loop when the script returns or raises (``run`` re-raises it)."""

    def __init__(self, studio: Studio, script: Script, *, x_input: bool = True) -> None:
        if x_input and shutil.which("xdotool") is None:
            raise RuntimeError("xdotool is needed to drive the window")
        self.x_input = x_input
        self._turning: tuple[float, float] | None = None  # (until, degrees per second)
        self._last_frame = time.monotonic()
        self.studio = studio
        self.app = studio.app
        self._script: Iterator[None] = script(self)
        self._error: BaseException | None = None
        self._done = False
        self.frames: list[tuple[float, bytes]] = []  # (time, view matrix bytes) per frame
        self._inputs: list[subprocess.Popen] = []

    def run(self) -> None:
        ps.set_user_callback(self._frame)
        if self.x_input:
            ps.show()
        else:  # no window system to run show() against
            while not self._done:
                ps.frame_tick()
        for p in self._inputs:
            p.kill()
        if self._error is not None:
            raise self._error

    def _frame(self) -> None:
        now = time.monotonic()
        if self._turning is not None:
            until, speed = self._turning
            _turn_view(speed * (now - self._last_frame))
            if now > until:
                self._turning = None
        self._last_frame = now
        self.studio.frame()
        self.frames.append((time.monotonic(), ps.get_camera_view_matrix().tobytes()))
        if self._done:
            return
        try:
            next(self._script)
        except StopIteration:
            self._finish()
        except BaseException as exc:  # noqa: BLE001 - handed to run()'s caller
            self._error = exc
            self._finish()

    def _finish(self) -> None:
        self._done = True
        ps.unshow()

    # ---- script helpers (use with ``yield from``) ----------------------------------------
    def wait(self, cond: Callable[[], bool], timeout: float, what: str
             ) -> Generator[None, None, None]:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            yield

    def settle(self, frames: int = 3, timeout: float = 30.0) -> Generator[None, None, None]:
        """Until the view has not moved for ``frames`` frames (a camera flight ended)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            yield
            views = {v for _, v in self.frames[-frames:]}
            if len(self.frames) >= frames and len(views) == 1:
                return
        raise TimeoutError("the view kept moving")

    def sleep(self, seconds: float) -> Generator[None, None, None]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            yield

    # ---- input through the X server ------------------------------------------------------
    def xdotool(self, *args: str | int | float, wait: bool = False) -> None:
        p = subprocess.Popen(["xdotool", *map(str, args)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        if wait:
            p.wait(10)
        else:
            self._inputs.append(p)

    def move_window_to_origin(self) -> None:
        """Window pixels are then screen pixels."""
        if not self.x_input:
            return
        self.xdotool("search", "--sync", "--name", "ReFLAME Studio", "windowmove", 0, 0,
                     wait=True)

    def drag(self, x: int, y: int, dx: int, seconds: float, steps_per_s: int = 30) -> None:
        """Press the left button at (x, y) and sweep ``dx`` pixels right and back in
        ``seconds``, as a user turning the head (one xdotool process)."""
        if not self.x_input:
            self._turning = (time.monotonic() + seconds, 90.0)
            return
        n = max(2, int(seconds * steps_per_s))
        args: list[str | int | float] = ["mousemove", x, y, "mousedown", 1]
        for i in range(1, n + 1):
            px = x + round(dx * math.sin(math.pi * i / n))
            args += ["sleep", f"{1.0 / steps_per_s:.3f}", "mousemove", px, y]
        args += ["mouseup", 1]
        self.xdotool(*args)

    def click(self, x: int, y: int) -> None:
        if not self.x_input:
            raise RuntimeError("clicks need X input (run under Xvfb)")
        self.xdotool("mousemove", x, y, "click", 1)

    # ---- geometry ------------------------------------------------------------------------
    @staticmethod
    def project(point: np.ndarray) -> tuple[float, float]:
        """Window pixel (x right, y down) where world ``point`` (3,) is seen."""
        cam = ps.get_view_camera_parameters()
        d = np.asarray(point, np.float64) - cam.get_position()
        z = float(d @ cam.get_look_dir())
        tan_v = math.tan(math.radians(cam.get_fov_vertical_deg()) / 2)
        ndc_x = float(d @ cam.get_right_dir()) / z / (tan_v * cam.get_aspect())
        ndc_y = float(d @ cam.get_up_dir()) / z / tan_v
        w, h = ps.get_window_size()
        return (ndc_x + 1) / 2 * w, (1 - ndc_y) / 2 * h

    def view_changes(self, start: float, end: float) -> int:
        """Frames between ``start`` and ``end`` (monotonic s) whose view differs from the
        frame before."""
        n = 0
        for (_, a), (t, b) in zip(self.frames, self.frames[1:], strict=False):
            n += start <= t <= end and a != b
        return n


def _turn_view(degrees: float) -> None:
    """Turn the view about the vertical axis through the view centre."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    turn = np.eye(4)
    turn[[0, 0, 2, 2], [0, 2, 0, 2]] = c, s, -s, c
    centre = np.eye(4)
    centre[:3, 3] = ps.get_view_center()
    back = np.eye(4)
    back[:3, 3] = -np.asarray(ps.get_view_center())
    ps.set_camera_view_matrix(ps.get_camera_view_matrix() @ centre @ turn @ back)


class VirtualDisplay:
    """An Xvfb server on a free display number, for as long as the ``with`` block runs."""

    def __init__(self, size: str = "1600x1000x24") -> None:
        self.size = size
        self.name: str | None = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> VirtualDisplay:
        if shutil.which("Xvfb") is None:
            raise RuntimeError("Xvfb is not installed (apt-get install xvfb libgl1-mesa-dri)")
        self._proc = subprocess.Popen(
            ["Xvfb", "-displayfd", "1", "-screen", "0", self.size, "-nolisten", "tcp"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        number = self._proc.stdout.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        self.name = f":{number}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
