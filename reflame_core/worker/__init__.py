"""The fitting worker: a separate process that owns the ``FitSession``, the renderer, the
landmark detector and the GPU, driven by the studio over a small message protocol.

A process, not a thread: Polyscope's ``show()`` holds Python's GIL while it renders and
waits for the next frame, so a fitting thread in the studio's process gets the GIL only
during the frame callback and runs 100x slower than headless.
"""

from reflame_core.worker.client import FitWorker

__all__ = ["FitWorker"]
