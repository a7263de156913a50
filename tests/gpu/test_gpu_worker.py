"""The studio's fitting worker on CUDA: a spawned process fits with nvdiffrast, survives a
kill, and its fit lands on the synthetic head's truth."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from reflame_core.fit.config import FitConfig
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.worker import FitWorker


def _wait(worker: FitWorker, cond, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert worker.state not in ("error", "crashed"), (worker.state, worker.error_trace)
        if time.monotonic() > end:
            os.kill(worker.pid, signal.SIGUSR1)  # the worker's stacks, on stderr
            time.sleep(2.0)
            snap = worker.latest_snapshot()
            raise AssertionError(("timed out", worker.state, worker.last_error, worker.restarts,
                                  snap.stage if snap else None, snap.iteration if snap else None,
                                  worker.take_notices()))
        time.sleep(0.01)


def test_worker_fits_on_cuda_and_survives_a_kill(small_synthetic_head, flame_template,
                                                 landmark_embedding) -> None:
    head = small_synthetic_head
    config = FitConfig.load(preset="default", overrides={"stages.texture.enabled": False,
                                                        "stages.coarse.steps": 300,
                                                        "stages.refine.steps": 100})
    worker = FitWorker("cuda")
    try:
        worker.set_assets(flame_template, landmark_embedding)
        worker.open_scan(head.scan)
        worker.new_session(config, LandmarkTargets.from_points(head.true_landmarks))
        worker.start()
        _wait(worker, lambda: (worker.latest_snapshot() is not None
                       and worker.latest_snapshot().stage == "coarse"
                       and worker.latest_snapshot().iteration >= 100))
        os.kill(worker.pid, signal.SIGKILL)
        _wait(worker, lambda: worker.poll() and worker.restarts == 1)
        assert worker.wait_idle(300) and worker.state == "paused"
        worker.resume()
        _wait(worker, lambda: worker.state == "finished")
        snap = worker.latest_snapshot()
    finally:
        worker.close()
    fitted = snap.to_canonical.inverse().apply(snap.vertices.astype(np.float64))
    height = np.ptp(head.true_vertices, axis=0).max()
    err = np.linalg.norm(fitted - head.true_vertices, axis=1).mean() / height
    assert err < 0.01, err
