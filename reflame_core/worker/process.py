"""The worker process: ``worker_main`` runs a ``FitRunner`` and talks to the studio.

Commands arrive on one pipe and are executed between iterations; updates leave on another
from a sender thread (``Outbox``), so the fit never waits for the studio to read.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from reflame_core.worker.protocol import Update
from reflame_core.worker.runner import FitRunner

PUBLISH_EVERY_S = 1 / 60  # the studio draws at most this often; more updates only cost CPU
PARENT_CHECK_S = 0.25  # how soon an orphaned worker notices its studio is gone


class Outbox:
    """Sends ``Update``s from its own thread. Updates posted while one is being sent merge
    into one (latest vertices and state; every loss record and result kept), so a studio
    that reads late never makes the fit wait and never faces a growing queue."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cond = threading.Condition()
        self._pending: Update | None = None
        self._sending = False
        self._closed = False
        self.broken = False  # the studio end is gone
        self._thread = threading.Thread(target=self._run, name="reflame-outbox", daemon=True)
        self._thread.start()

    def post(self, update: Update) -> None:
        with self._cond:
            self._pending = update if self._pending is None else self._pending.merged(update)
            self._cond.notify()

    def close(self, timeout: float = 1.0) -> None:
        """Send what is pending (up to ``timeout``), then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                update, self._pending = self._pending, None
            try:
                self._conn.send(update)
            except (OSError, EOFError):  # the studio closed its end: nobody to tell
                self.broken = True
                return


def _die_with_parent() -> None:
    """Ask Linux to end this process when the studio dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def worker_main(commands: Connection, updates: Connection, device: str, render_backend: str,
                parent_pid: int) -> None:
    """Entry point of the spawned worker process; returns when told to quit, or when the
    studio is gone (its pipe closed, or its process ended)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the studio's to handle
    # A crash (segfault in a GPU library) leaves its Python stack on stderr, and SIGUSR1
    # prints the stacks of a worker that seems stuck.
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    _die_with_parent()
    runner = FitRunner(device, render_backend)
    outbox = Outbox(updates)
    outbox.post(runner.update())
    last_post = last_check = time.monotonic()
    while not runner.quit and not outbox.broken:
        if commands.poll(0 if runner.wants_step else PARENT_CHECK_S):
            try:
                command = commands.recv()
            except (EOFError, OSError):
                break
            runner.handle(command)
            outbox.post(runner.update())
            continue
        now = time.monotonic()
        if now - last_check > PARENT_CHECK_S:
            last_check = now
            if os.getppid() != parent_pid:
                break
        if runner.wants_step:
            runner.tick()
            now = time.monotonic()
            if now - last_post >= PUBLISH_EVERY_S or not runner.wants_step:
                last_post = now
                outbox.post(runner.update())
    outbox.close()
    # Skip interpreter teardown (unloading torch takes about half a second): the studio is
    # waiting for this process to end, and nothing here needs finalising.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
