"""``FitWorker``: the studio's handle on the fitting worker process.

Every command returns at once (it is written to the worker's pipe by a sender thread);
``poll()`` reads what the worker sent, without blocking. Use one ``FitWorker`` from one
thread (the GUI thread).

Crash isolation: a worker that dies (an exception it could not survive, CUDA out of memory,
a segfault) is started again and handed the scan, the session's settings and the last
snapshot it sent; the fit goes on from there, paused, and ``take_notices()`` says what
happened.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np

from reflame_core.assets.flame import FlameTemplate, LandmarkEmbedding
from reflame_core.fit.config import FitConfig
from reflame_core.fit.landmark_outliers import LandmarkOutlier
from reflame_core.fit.session import FitSnapshot, StepReport
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.geometry.similarity import Similarity
from reflame_core.io.mesh import Scan
from reflame_core.landmarks.landmark_set import LandmarkSet
from reflame_core.render.cameras import OrbitCameras
from reflame_core.worker.process import worker_main
from reflame_core.worker.protocol import Command, Result, Update

CLOSE_GRACE_S = 0.6  # a quit command is answered between two iterations: well inside this
MAX_RESTARTS = 3  # crashes within RESTART_WINDOW_S before the worker is left down
RESTART_WINDOW_S = 120.0


class FitWorker:
    """Runs fitting and landmark detection in a spawned process.

    ``state``: the worker's (``protocol.STATES``), or "starting" (before its first word),
    "crashed" (down after too many crashes), "stopped" (closed). Reading ``state`` or a
    snapshot takes in what the worker has sent; nothing here blocks.
    """

    def __init__(self, device: str = "cpu", *, render_backend: str = "auto") -> None:
        self.device = device
        self.render_backend = render_backend
        self._state = "starting"
        self.last_error: str | None = None
        self.error_trace: str | None = None
        self.restarts = 0
        self._notices: list[str] = []
        self._crash_times: list[float] = []
        self._seq = 0
        self._acked = 0
        self._closed = False
        # what a restarted worker must be given again
        self._assets: Command | None = None
        self._scan: Command | None = None
        self._session_log: list[Command] = []
        # what the worker told us
        self._session_key: tuple[int, int] | None = None  # (restarts, session_id)
        self._history: list[StepReport] = []
        self._texture: np.ndarray | None = None
        self._outliers: list[LandmarkOutlier] = []
        self.outliers_version = 0  # increases whenever ``landmark_outliers()`` changes
        self._snapshot: FitSnapshot | None = None
        self._results: dict[str, Result] = {}
        self._awaited: dict[int, str] = {}  # seq -> kind of result commands not answered yet
        self._residuals: dict | None = None
        self._spawn()

    # ---- process -------------------------------------------------------------------------
    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")  # never fork: CUDA and the GUI's threads do not survive it
        cmd_r, cmd_w = ctx.Pipe(duplex=False)
        upd_r, upd_w = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=worker_main, name="reflame-fit-worker", daemon=True,
            args=(cmd_r, upd_w, self.device, self.render_backend, os.getpid()))
        with _main_module_hidden():
            self._process.start()
        cmd_r.close()
        upd_w.close()
        self._updates: Connection = upd_r
        self._outgoing: queue.Queue[bytes | None] = queue.Queue()
        self._sender = threading.Thread(target=_send_all, args=(cmd_w, self._outgoing),
                                        name="reflame-worker-sender", daemon=True)
        self._sender.start()
        self._state = "starting"

    @property
    def state(self) -> str:
        """The worker's state as of what it has sent so far (reading it reads the pipe)."""
        self.poll()
        return self._state

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self, timeout: float = CLOSE_GRACE_S) -> None:
        """End the worker: asked to quit, then terminated, then killed; returns within about
        ``timeout`` + 0.4 s and leaves no process behind."""
        if self._closed:
            return
        self._closed = True
        self._outgoing.put(ForkingPickler.dumps(Command(self._next_seq(), "quit")))
        self._outgoing.put(None)
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(0.2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(0.2)
        self._updates.close()
        self._state = "stopped"

    # ---- commands ------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _send(self, command_name: str, /, **args: Any) -> Command:
        if self._closed:
            raise RuntimeError("the fitting worker is closed")
        command = Command(self._next_seq(), command_name, args)
        # Pickled here (a memcpy for arrays); the sender thread only writes the bytes, so a
        # worker busy with a long step never blocks the GUI thread.
        self._outgoing.put(ForkingPickler.dumps(command))
        return command

    def set_assets(self, template: FlameTemplate, embedding: LandmarkEmbedding) -> None:
        self._assets = self._send("set_assets", template=template, embedding=embedding)

    def open_scan(self, scan: Scan) -> None:
        """A new scan; ends the current session."""
        self._scan = self._send("open_scan", scan=scan)
        self._session_log = []

    def warm_up(self) -> None:
        """Load the landmark detector in the worker ahead of the first detection."""
        self._send("warm_up")

    def new_session(self, config: FitConfig, landmarks: LandmarkTargets | None,
                    to_canonical: Similarity | None = None) -> None:
        """A new fit of the open scan (not started: ``start()`` runs it), in the frame
        ``to_canonical`` (None: the config's ``frame.up`` / ``frame.front``)."""
        self._session_log = [self._send("new_session", config=config.copy(),
                                        landmarks=landmarks, to_canonical=to_canonical)]

    def start(self) -> None:
        self._send("start")

    def resume(self) -> None:
        self._send("resume")

    def pause(self) -> None:
        self._send("pause")

    def step(self, n: int = 1) -> None:
        """Run ``n`` iterations, then pause."""
        self._send("step", n=int(n))

    def skip_stage(self) -> None:
        self._send("skip_stage")

    def restart_stage(self) -> None:
        self._send("restart_stage")

    def goto_stage(self, name: str) -> None:
        self._send("goto_stage", name=name)

    def set_param(self, stage: str, name: str, value: Any) -> None:
        self._session_log.append(self._send("set_param", stage=stage, name=name, value=value))

    def set_landmarks(self, landmarks: LandmarkTargets | None) -> None:
        self._session_log.append(self._send("set_landmarks", landmarks=landmarks))

    def set_cameras(self, cameras: OrbitCameras) -> None:
        self._session_log.append(self._send("set_cameras", cameras=cameras))

    def detect(self, to_canonical: Similarity | None = None, backend: str = "auto",
               refine: bool = False) -> int:
        """Detect landmarks on the open scan (``refine``: then place them by a FLAME fit); the
        ``LandmarkSet`` comes as result "detect"."""
        return self._ask("detect", to_canonical=to_canonical, backend=backend, refine=refine)

    def find_frame(self, backend: str = "auto") -> int:
        """Find the open scan's frame from its face; the ``FoundFrame`` comes as result
        "find_frame"."""
        return self._ask("find_frame", backend=backend)

    def request_residuals(self, views: list[int]) -> int:
        """Per-view residual images; read them with ``latest_residuals()``."""
        return self._ask("residuals", views=list(views))

    def export(self, out_dir: str | Path, scan_landmarks: LandmarkSet | None = None) -> int:
        """Write the fit into ``out_dir`` (in the worker); the report comes as result
        "export"."""
        return self._ask("export", out_dir=str(out_dir), scan_landmarks=scan_landmarks)

    def _ask(self, kind: str, /, **args: Any) -> int:
        """A command whose answer is a ``Result``: one always comes, an error one if the
        worker dies first (so nobody waits for it forever)."""
        seq = self._send(kind, **args).seq
        self._awaited[seq] = kind
        return seq

    # ---- reading (never blocks) ----------------------------------------------------------
    def poll(self) -> bool:
        """Read every update the worker has sent; restart it if it died. Returns whether
        anything arrived."""
        if self._closed:
            return False
        got = False
        try:
            while self._updates.poll(0):
                self._apply(self._updates.recv())
                got = True
        except (EOFError, OSError):
            pass  # the worker is gone: its exit code tells why, below
        if self._process.exitcode is not None:
            self._on_death()
            got = True
        return got

    def latest_snapshot(self) -> FitSnapshot | None:
        self.poll()
        return self._snapshot

    def landmark_outliers(self) -> list[LandmarkOutlier]:
        """The landmarks the current fit contradicts, as the worker last sent them
        (largest residual first; empty without a session)."""
        self.poll()
        return self._outliers

    def latest_residuals(self) -> dict | None:
        self.poll()
        return self._residuals

    def take_result(self, kind: str) -> Result | None:
        """The newest result of ``kind`` ("detect", "find_frame", "export", "residuals")
        not yet taken."""
        self.poll()
        return self._results.pop(kind, None)

    def take_notices(self) -> list[str]:
        """Things the user must be told (a crash and the restart), once each."""
        notices, self._notices = self._notices, []
        return notices

    @property
    def busy(self) -> bool:
        """Commands not yet executed, or iterations being run."""
        return self._acked < self._seq or self.state in ("running", "starting")

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every command sent so far has run and the fit is not running (tests
        and scripts; never the GUI thread)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.poll()
            if self.state in ("crashed", "stopped"):
                return True
            if self._acked >= self._seq and self.state not in ("running", "starting"):
                return True
            time.sleep(0.005)
        return False

    def wait_result(self, kind: str, timeout: float = 120.0) -> Result:
        """Block until a result of ``kind`` arrives (tests and scripts only)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            result = self.take_result(kind)
            if result is not None:
                return result
            if self.state in ("crashed", "stopped"):
                break
            time.sleep(0.005)
        raise TimeoutError(f"no {kind!r} result from the fitting worker ({self.state})")

    # ---- updates -------------------------------------------------------------------------
    def _apply(self, update: Update) -> None:
        self._acked = max(self._acked, update.acked)
        self._state = update.state
        self.last_error, self.error_trace = update.error, update.error_trace
        for result in update.results:
            self._awaited.pop(result.seq, None)
            self._results[result.kind] = result
            if result.kind == "residuals" and result.error is None:
                self._residuals = result.value
        delta = update.session
        if delta is None:
            self._snapshot, self._history, self._texture = None, [], None
            self._session_key = None
            self._set_outliers([])
            return
        if (self.restarts, delta.session_id) != self._session_key:
            self._session_key = (self.restarts, delta.session_id)
            self._history, self._texture = [], None
            self._set_outliers([])
        if delta.outliers is not None:
            self._set_outliers(delta.outliers)
        del self._history[delta.history_start:]
        self._history.extend(delta.new_history)
        if delta.texture is not None:
            self._texture = delta.texture
        self._snapshot = FitSnapshot(
            vertices=delta.vertices, stage=delta.stage, iteration=delta.iteration,
            stages=delta.stages, history=self._history, to_canonical=delta.to_canonical,
            version=delta.version, events=delta.events, texture=self._texture,
            rigid=delta.rigid)

    def _set_outliers(self, outliers: list[LandmarkOutlier]) -> None:
        if outliers or self._outliers:
            self._outliers = list(outliers)
            self.outliers_version += 1

    def _on_death(self) -> None:
        code = self._process.exitcode
        self._updates.close()
        self._outgoing.put(None)
        reason = _exit_reason(code)
        for seq, kind in sorted(self._awaited.items()):
            self._results[kind] = Result(seq, kind, error=f"the fitting worker stopped ({reason}) "
                                         "before it finished; ask again")
        self._awaited.clear()
        now = time.monotonic()
        self._crash_times = [t for t in self._crash_times if now - t < RESTART_WINDOW_S] + [now]
        if len(self._crash_times) > MAX_RESTARTS:
            self._state = "crashed"
            self._closed = True
            self._notices.append(
                f"The fitting worker stopped again ({reason}); {MAX_RESTARTS} restarts in "
                f"{RESTART_WINDOW_S:.0f} s, so it stays down. A new fit session or detection "
                "starts a fresh one.")
            return
        where = ""
        snap = self._snapshot
        if snap is not None:
            where = (f" at {snap.stage}, iteration {snap.iteration}" if snap.stage
                     else " after the last stage")
        self._restart()
        self._notices.append(
            f"The fitting worker stopped ({reason}){where}. It was restarted from the last "
            "snapshot; the fit is paused there.")

    def _restart(self) -> None:
        self.restarts += 1
        snapshot = self._snapshot
        log = list(self._session_log)
        self._spawn()
        self._acked = self._seq  # what the dead worker did not run is replayed below, or lost
        for command in (self._assets, self._scan):
            if command is not None:
                self._outgoing.put(ForkingPickler.dumps(Command(self._next_seq(), command.name,
                                                                command.args)))
        if not log:
            self._session_log = []
            return
        first = log[0]
        args = dict(first.args)
        if snapshot is not None:  # else: it died before its first snapshot; restore as before
            args["restore"] = replace(snapshot, history=list(snapshot.history))
        self._session_log = [self._send("new_session", **args)]
        for command in log[1:]:
            self._session_log.append(self._send(command.name, **command.args))


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start the worker without re-running the caller's script in it.

    A spawned child imports the parent's ``__main__`` (to unpickle what it defines); the
    worker needs nothing from it, and a script without an ``if __name__ == "__main__"``
    guard would open a second studio, and so a second worker, inside the first worker.
    """
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


def _send_all(conn: Connection, outgoing: queue.Queue[bytes | None]) -> None:
    """The sender thread: writes pickled commands in order until told to stop (None)."""
    while True:
        data = outgoing.get()
        if data is None:
            break
        try:
            conn.send_bytes(data)
        except (OSError, EOFError):  # the worker is gone; poll() reports it
            break
    conn.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
