"""``FitController``: runs a ``FitSession`` on a background thread.

All session work (and so all CUDA work) happens on the worker thread; other threads send
commands and read the latest snapshot without ever waiting for a step to finish.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable

from reflame_core.fit.session import FitSession, FitSnapshot

STATES = ("idle", "running", "paused", "stopped", "error")


class FitController:
    """Commands are queued and executed by the worker between two iterations, in order.

    ``state``: "idle" (not started), "running", "paused" (waiting for commands), "stopped"
    (worker ended), "error" (the last command or step raised; the session is unchanged since
    its last good step and accepts commands again).
    """

    def __init__(self, session: FitSession) -> None:
        self.session = session
        self.state = "idle"
        self.last_error: str | None = None
        self._commands: queue.Queue[Callable[[], None]] = queue.Queue()
        self._snapshot: FitSnapshot = session.snapshot()
        self._residuals: dict | None = None
        self._steps_left: int | None = None  # None = run until paused or done
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error_trace: str | None = None  # full traceback of the last error, for bug reports

    # ----- commands (any thread) ----------------------------------------------------------
    def start(self) -> None:
        """Start the worker and run the stages."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="reflame-fit", daemon=True)
            self._thread.start()
        self._send(lambda: self._go(None))

    def pause(self) -> None:
        self._send(lambda: self._go(0))

    def resume(self) -> None:
        self._send(lambda: self._go(None))

    def step(self, n: int = 1) -> None:
        """Run ``n`` iterations, then pause."""
        self._ensure_thread()
        self._send(lambda: self._go(n))

    def stop(self, timeout: float | None = 10.0) -> None:
        """End the worker after the iteration in progress."""
        self._stop.set()
        self._commands.put(lambda: None)
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = "stopped"

    def set_param(self, stage: str, name: str, value) -> None:
        self._send(lambda: self.session.set_param(stage, name, value))

    def set_landmarks(self, landmarks) -> None:
        self._send(lambda: self.session.set_landmarks(landmarks))

    def set_cameras(self, cameras) -> None:
        self._send(lambda: self.session.set_cameras(cameras))

    def skip_stage(self) -> None:
        self._send(self.session.skip_stage)

    def restart_stage(self) -> None:
        self._send(self.session.restart_stage)

    def goto_stage(self, name: str) -> None:
        self._send(lambda: self.session.goto_stage(name))

    def request_residuals(self, views: list[int]) -> None:
        """Compute per-view residual images; read them with ``latest_residuals()``."""
        self._send(lambda: setattr(self, "_residuals", self.session.residual_images(views)))

    def call(self, fn: Callable[[FitSession], None]) -> None:
        """Run ``fn(session)`` on the worker (for operations without a dedicated command)."""
        self._send(lambda: fn(self.session))

    # ----- reading (any thread, never blocks) -----------------------------------------------
    def latest_snapshot(self) -> FitSnapshot:
        return self._snapshot

    def latest_residuals(self) -> dict | None:
        return self._residuals

    @property
    def busy(self) -> bool:
        """True while commands wait or iterations remain to be run."""
        return not self._commands.empty() or (self.state == "running" and not self.session.done)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no command waits and the worker is paused (tests and scripts only)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._commands.empty() and self.state in ("paused", "error", "stopped"):
                return True
            time.sleep(0.005)
        return False

    # ----- worker -----------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="reflame-fit", daemon=True)
            self._thread.start()

    def _send(self, command: Callable[[], None]) -> None:
        self._ensure_thread()
        self._commands.put(command)

    def _go(self, steps: int | None) -> None:
        self._steps_left = steps
        self.state = "paused" if steps == 0 else "running"

    def _work(self) -> None:
        while not self._stop.is_set():
            running = self.state == "running" and not self.session.done
            try:
                command = self._commands.get(block=not running, timeout=None)
            except queue.Empty:
                command = None
            if self._stop.is_set():
                break
            try:
                if command is not None:
                    command()
                    self._publish()
                    continue
                self.session.step()
                self._publish()
                if self._steps_left is not None:
                    self._steps_left -= 1
                    if self._steps_left <= 0:
                        self.state = "paused"
                if self.session.done:
                    self.state = "paused"
            except Exception as exc:  # noqa: BLE001 - reported to the user, session survives
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.error_trace = traceback.format_exc()
                self.state = "error"
        self.state = "stopped"

    def _publish(self) -> None:
        self._snapshot = self.session.snapshot()
