"""The fitting worker: the command runner in-process, then the real spawned process (CPU):
stepping, errors, a crash and its restart from the last snapshot, and shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from landmark_faults import displaced_landmarks

from reflame_core.fit.config import FitConfig
from reflame_core.fit.session import StepReport
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.geometry.similarity import Similarity
from reflame_core.worker import FitWorker
from reflame_core.worker.protocol import Command, Result, SessionDelta, Update
from reflame_core.worker.runner import FitRunner

TINY = {
    "cameras.num_views": 2, "cameras.resolution": 48, "stages.affine.steps": 1,
    "stages.lattice.steps": 1,
    "stages.coarse.steps": 6, "stages.coarse.surface_samples": 2000,
    "stages.refine.steps": 3, "stages.refine.surface_samples": 2000,
    "stages.texture.enabled": False,
}


def _config(**over) -> FitConfig:
    return FitConfig.load(preset="fast", overrides={**TINY, **over})


def _delta(session_id: int, start: int, n: int, value: float) -> SessionDelta:
    return SessionDelta(session_id=session_id, vertices=np.full((4, 3), value, np.float32),
                        stage="coarse", iteration=start + n, stages=[],
                        new_history=[StepReport("coarse", start + i + 1, {}, 0.0)
                                     for i in range(n)],
                        history_start=start, events=[], to_canonical=Similarity.identity(),
                        version=start + n)


def test_merged_updates_keep_every_record_and_result_and_the_latest_state() -> None:
    a = Update(1, "running", session=_delta(1, 0, 3, 1.0), results=[Result(1, "detect")])
    b = Update(2, "paused", session=_delta(1, 3, 2, 2.0), results=[Result(2, "export")])
    m = a.merged(b)
    assert (m.acked, m.state) == (2, "paused")
    assert [r.iteration for r in m.session.new_history] == [1, 2, 3, 4, 5]
    assert m.session.history_start == 0 and float(m.session.vertices[0, 0]) == 2.0
    assert [r.kind for r in m.results] == ["detect", "export"]
    # a new session replaces the old one's records instead of extending them
    c = m.merged(Update(3, "idle", session=_delta(2, 0, 1, 3.0)))
    assert [r.iteration for r in c.session.new_history] == [1] and c.session.session_id == 2


@pytest.fixture
def runner(small_synthetic_head, flame_template, landmark_embedding) -> FitRunner:
    torch.set_num_threads(2)
    r = FitRunner("cpu", render_backend="torch")
    r.handle(Command(1, "set_assets", {"template": flame_template,
                                       "embedding": landmark_embedding}))
    r.handle(Command(2, "open_scan", {"scan": small_synthetic_head.scan}))
    lm = LandmarkTargets.from_points(small_synthetic_head.true_landmarks)
    r.handle(Command(3, "new_session", {"config": _config(), "landmarks": lm}))
    return r


def test_runner_steps_reports_errors_and_finishes(runner: FitRunner) -> None:
    assert runner.state == "idle" and runner.acked == 3
    runner.handle(Command(4, "step", {"n": 4}))  # rigid, affine, jaw, lattice
    while runner.wants_step:
        runner.tick()
    first = runner.update()
    assert first.state == "paused" and len(first.session.new_history) == 4
    assert first.session.stage == "coarse" and first.session.rigid is not None

    runner.handle(Command(5, "goto_stage", {"name": "no-such-stage"}))
    assert runner.state == "error" and "no-such-stage" in runner.error
    runner.handle(Command(6, "residuals", {"views": [0]}))  # result commands report, not fail
    runner.handle(Command(7, "export", {"out_dir": "/dev/null/x"}))
    update = runner.update()
    assert update.results[0].error is None and update.results[0].value["mask_diff"].ndim == 3
    assert update.results[1].error and update.session.new_history == []

    runner.handle(Command(8, "start"))  # the session is usable after the error
    while runner.wants_step:
        runner.tick()
    last = runner.update()
    assert last.state == "finished" and last.session.stage is None
    assert last.session.history_start == 4 and len(last.session.new_history) == 10
    runner.handle(Command(9, "restart_stage"))
    assert runner.state == "paused"  # no longer finished: the last stage runs again


def _wait(worker: FitWorker, cond, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert worker.state not in ("error", "crashed"), (worker.state, worker.error_trace)
        assert time.monotonic() < end, ("timed out", worker.state, worker.last_error)
        time.sleep(0.01)


def test_worker_process_fits_survives_a_crash_and_closes(small_synthetic_head, flame_template,
                                                         landmark_embedding) -> None:
    worker = FitWorker("cpu")
    try:
        worker.set_assets(flame_template, landmark_embedding)
        worker.open_scan(small_synthetic_head.scan)
        worker.new_session(_config(**{"stages.coarse.steps": 400}),
                           LandmarkTargets.from_points(small_synthetic_head.true_landmarks))
        worker.step(6)  # rigid, affine, jaw, lattice, coarse 1-2
        assert worker.wait_idle(120)
        snap = worker.latest_snapshot()
        assert worker.state == "paused" and len(snap.history) == 6  # exactly: wait_idle waits
        assert snap.stage == "coarse" and snap.iteration == 2

        worker.start()
        _wait(worker, lambda: worker.latest_snapshot().iteration >= 6)
        os.kill(worker.pid, signal.SIGKILL)  # as a segfault or the OOM killer would
        _wait(worker, lambda: worker.poll() and worker.restarts == 1)
        notices = worker.take_notices()
        assert len(notices) == 1 and "SIGKILL" in notices[0] and "restarted" in notices[0]
        assert worker.wait_idle(120)
        restored = worker.latest_snapshot()
        assert worker.state == "paused" and restored.stage == "coarse"
        assert restored.iteration >= 6 and len(restored.history) >= 10  # nothing forgotten
        worker.set_param("coarse", "steps", restored.iteration + 2)
        worker.resume()
        _wait(worker, lambda: worker.latest_snapshot() is not None
              and worker.state == "finished")
        assert worker.latest_snapshot().stage is None
        assert np.isfinite(worker.latest_snapshot().vertices).all()
    finally:
        t0 = time.monotonic()
        worker.close()
        closed_in = time.monotonic() - t0
    assert not worker.alive and worker.state == "stopped"
    assert closed_in < 1.0


def test_a_request_in_flight_when_the_worker_dies_is_answered(small_synthetic_head) -> None:
    """Detection asked for, then the worker killed: the studio gets an error, not silence
    (its Detect button would stay disabled forever)."""
    worker = FitWorker("cpu")
    try:
        worker.open_scan(small_synthetic_head.scan)
        assert worker.wait_idle(120)
        worker.detect()
        os.kill(worker.pid, signal.SIGKILL)
        result = worker.wait_result("detect", timeout=60)
        assert result.value is None and "stopped" in result.error and "SIGKILL" in result.error
        assert worker.restarts == 1
    finally:
        worker.close()


def test_worker_ends_with_the_studio_process(tmp_path) -> None:
    """A studio killed outright (SIGKILL, no cleanup) leaves no worker behind."""
    script = tmp_path / "studio.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from reflame_core.worker import FitWorker
        if __name__ == "__main__":
            w = FitWorker("cpu")
            assert w.wait_idle(120)
            print(w.pid, flush=True)
            time.sleep(600)
    """))
    studio = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=os.getcwd())
    try:
        pid = int(studio.stdout.readline())
        assert _running(pid)
        studio.kill()
        studio.wait(10)
        end = time.monotonic() + 5.0
        while _running(pid):
            assert time.monotonic() < end, "the worker outlived its studio"
            time.sleep(0.05)
    finally:
        studio.kill()


def test_a_script_without_main_guard_runs_once(tmp_path) -> None:
    """The worker does not re-run the caller's script (spawn would import it as __main__)."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        from reflame_core.worker import FitWorker
        print("script ran", flush=True)
        w = FitWorker("cpu")
        assert w.wait_idle(120) and w.state == "idle", w.state
        w.close()
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("script ran") == 1


def _running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_studio_replaces_a_worker_that_crashed_too_often(small_synthetic_head, tmp_path,
                                                             monkeypatch, flame_dir) -> None:
    from reflame_app.state.app_state import AppState
    from reflame_core.io.obj import write_obj

    monkeypatch.setenv("REFLAME_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    s = small_synthetic_head.scan
    path = write_obj(tmp_path / "head.obj", s.vertices, s.faces, uv=s.uv, uv_faces=s.uv_faces,
                     texture=s.texture)
    app = AppState(flame_dir=flame_dir, preset="fast")
    try:
        app.open_scan(path)
        first = app.worker
        for _ in range(4):  # one more crash than the worker restarts itself for
            assert first.wait_idle(120)
            os.kill(first.pid, signal.SIGKILL)
            end = time.monotonic() + 30
            while first.alive:
                assert time.monotonic() < end
                time.sleep(0.01)
            first.poll()
        assert first.state == "crashed"
        app.poll()
        assert any("stays down" in m.text for m in app.messages.errors)
        app.start_session()  # asks for work again: a fresh worker, with the scan
        assert app.worker is not first and app.worker.wait_idle(120)
        assert app.worker.state == "idle" and app.controller is app.worker
    finally:
        app.shutdown()


# Jaw, cheek, nose tip, mouth corner, brow (as in test_robust_landmarks; listed sorted).
DISPLACED = [4, 12, 21, 30, 48]


def test_runner_sends_landmark_outliers_when_they_change(small_synthetic_head, flame_template,
                                                         landmark_embedding) -> None:
    torch.set_num_threads(2)
    r = FitRunner("cpu", render_backend="torch")
    r.handle(Command(1, "set_assets", {"template": flame_template,
                                       "embedding": landmark_embedding}))
    r.handle(Command(2, "open_scan", {"scan": small_synthetic_head.scan}))
    pts = displaced_landmarks(small_synthetic_head, DISPLACED)
    r.handle(Command(3, "new_session", {"config": _config(),
                                        "landmarks": LandmarkTargets.from_points(pts)}))
    assert r.update().session.outliers == []  # before the rigid stage: nothing to say yet
    assert r.update().session.outliers is None  # and not said again
    r.handle(Command(4, "step", {"n": 1}))  # rigid
    while r.wants_step:
        r.tick()
    first = r.update()
    found = first.session.outliers
    assert sorted(o.index for o in found) == DISPLACED
    assert all(o.weight < 0.1 and 0.1 < o.residual < 0.5 for o in found)
    again = r.update()
    assert again.session.outliers is None  # unchanged: not sent
    assert first.merged(again).session.outliers == found  # coalesced updates keep them
    # The artist moves two of them (edited = trusted): they are never outliers again.
    lm = LandmarkTargets.from_points(pts)
    lm.trusted[[4, 30]] = True
    r.handle(Command(5, "set_landmarks", {"landmarks": lm}))
    after = r.update().session.outliers
    assert after is not None and not {o.index for o in after} & {4, 30}
    assert {12, 21, 48} <= {o.index for o in after}


def test_the_studio_lists_the_fits_outliers(small_synthetic_head, tmp_path, monkeypatch,
                                            flame_dir) -> None:
    """Through the worker process: the studio's panel state lists the landmarks the fit
    contradicts, and an edited one leaves the list at once and for good."""
    from reflame_app.state.app_state import AppState
    from reflame_core.geometry.surface_query import MeshQuery
    from reflame_core.io.obj import write_obj

    monkeypatch.setenv("REFLAME_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    head = small_synthetic_head
    s = head.scan
    path = write_obj(tmp_path / "head.obj", s.vertices, s.faces)
    app = AppState(flame_dir=flame_dir, preset="fast")
    try:
        for key, value in TINY.items():
            app.config.set(key, value)
        app.open_scan(path)
        lms = head.true_landmark_set()  # "detected" landmarks, five of them far off
        moved = displaced_landmarks(head, DISPLACED)[DISPLACED]
        hits = MeshQuery(s.vertices, s.faces).closest(moved)
        lms.face_idx[DISPLACED] = hits.face
        lms.bary[DISPLACED] = hits.bary / hits.bary.sum(1, keepdims=True)
        app.editor.set_landmarks(lms)
        app.start_session()
        app.fit.command("step", 1)
        end = time.monotonic() + 120
        while len(app.editor.outliers) < len(DISPLACED):
            assert time.monotonic() < end, [m.text for m in app.messages.items]
            app.poll()
            time.sleep(0.01)
        assert sorted(o.index for o in app.editor.outliers) == DISPLACED
        app.editor.move(30, int(lms.face_idx[30]), lms.bary[30])  # the artist confirms it
        assert 30 not in {o.index for o in app.editor.outliers}
        app.poll()  # sends the edit; the worker answers with its new list
        sent = app.worker.outliers_version
        while app.worker.outliers_version == sent:
            assert time.monotonic() < end
            app.poll()
            time.sleep(0.01)
        assert 30 not in {o.index for o in app.worker.landmark_outliers()}
        assert {4, 12, 21, 48} <= {o.index for o in app.editor.outliers}
    finally:
        app.shutdown()


def test_detection_placed_by_a_fit_in_the_worker(runner: FitRunner, small_synthetic_head
                                                 ) -> None:
    """The studio's "then place by a FLAME fit": the worker detects, then moves the 68 to
    where a FLAME fit puts them; without FLAME it says so before detecting."""
    from reflame_core.synthetic.scoring import landmark_errors

    head = small_synthetic_head
    lms = runner.cmd_detect(refine=True)
    err = landmark_errors(head, lms.positions(head.scan.vertices, head.scan.faces)[:68])
    assert lms.placed_mask[:68].all() and np.mean(err < 0.02) >= 0.9, np.round(err, 3)
    bare = FitRunner("cpu", render_backend="torch")
    bare.handle(Command(1, "open_scan", {"scan": head.scan}))
    with pytest.raises(RuntimeError, match="needs FLAME"):
        bare.cmd_detect(refine=True)
