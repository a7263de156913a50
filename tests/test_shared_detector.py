"""One detector for orientation and detection in a fit, closed in the background after."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from reflame_core.landmarks.detector import DetectorUnavailable, SharedDetector


def test_one_detector_for_every_pass_then_closed_in_the_background() -> None:
    shared = SharedDetector("mediapipe")
    first = shared.get()
    assert shared.get() is first
    assert first.detect(np.zeros((1, 64, 64, 3), np.uint8)) == [None]  # it runs
    thread = shared.release()
    assert thread is not None and not thread.daemon
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert not first._finalizer.alive  # closed: nothing left for exit time
    assert shared.release() is None  # released once


def test_an_unavailable_detector_fails_the_same_way_every_time(tmp_path) -> None:
    shared = SharedDetector("mediapipe", mediapipe_model=tmp_path / "missing.task")
    with pytest.raises(DetectorUnavailable, match="missing.task") as first:
        shared.get()
    with pytest.raises(DetectorUnavailable) as again:
        shared.get()
    assert again.value is first.value
    assert shared.release() is None


def test_a_program_that_ends_while_the_detector_closes_ends_quietly() -> None:
    # A fit that fails right after detection, or a script, exits while the close thread
    # still runs; MediaPipe's task pool must not be shut down under it.
    code = ("from reflame_core.landmarks.detector import SharedDetector\n"
            "d = SharedDetector('mediapipe'); d.get(); d.release()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
