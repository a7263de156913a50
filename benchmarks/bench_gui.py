"""The studio's live fit in its real window: ``ps.show()`` under a display (Xvfb is
started when $DISPLAY is unset), the user's mouse through the X server (xdotool).

Measures, on one synthetic head (preset ``fast``, CPU unless --device):
- headless: landmark detection (``detect_landmarks``, what ``reflame landmarks`` runs) and
  coarse-stage iterations per second of a ``FitSession`` stepped in this process, before
  any window exists; then the fitting worker alone (no window);
- studio: detection from the Detect button's path, coarse it/s while the window is left
  alone and while the view is turned by mouse drags, frames per second, and the CPU used
  by the studio process and by its fitting worker, fitting and idle (fit paused).

Prints JSON. ``python benchmarks/bench_gui.py [--seconds 15] [--seed 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.fit.config import FitConfig
from reflame_core.fit.session import FitSession
from reflame_core.fit.targets import LandmarkTargets
from reflame_core.landmarks.detect import detect_landmarks
from reflame_core.synthetic.head import make_synthetic_head, write_synthetic_head

# The coarse stage must outlast the measurement: no step ceiling, no convergence end.
LONG_COARSE = {"stages.coarse.steps": 100000, "stages.coarse.plateau_window": 0}


def data_dir() -> Path:
    return Path(os.environ.get("REFLAME_TEST_DATA",
                               Path(__file__).resolve().parents[2] / "shared" / "data"))


def headless(head, template, embedding, device: str, preset: str, steps: int,
             detect: bool) -> dict:
    scan = head.scan
    if detect:
        t0 = time.monotonic()
        lms = LandmarkTargets.from_landmark_set(detect_landmarks(scan, device=device), scan)
        detect_s = time.monotonic() - t0
    else:
        lms, detect_s = LandmarkTargets.from_points(head.true_landmarks), None
    config = FitConfig.load(preset=preset, overrides=LONG_COARSE)
    session = FitSession(scan, template, embedding, lms, config, device=device)
    while session.current.name != "coarse" or session.current.iteration < 3:
        session.step()  # rigid, then the coarse stage's set-up and first iterations
    t0 = time.monotonic()
    for _ in range(steps):
        session.step()
    return {"detect_s": detect_s, "coarse_it_per_s": steps / (time.monotonic() - t0)}


def worker_alone(head, template, embedding, device: str, preset: str, seconds: float) -> dict:
    """The fitting worker with no window: what the process split itself costs."""
    from reflame_core.worker import FitWorker

    worker = FitWorker(device)
    try:
        worker.set_assets(template, embedding)
        worker.open_scan(head.scan)
        worker.new_session(FitConfig.load(preset=preset, overrides=LONG_COARSE),
                           LandmarkTargets.from_points(head.true_landmarks))
        worker.start()
        while (worker.latest_snapshot() is None or worker.latest_snapshot().stage != "coarse"
               or worker.latest_snapshot().iteration < 3):
            time.sleep(0.01)
        it0, t0 = worker.latest_snapshot().iteration, time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(0.05)  # read as a studio would, at 20 fps
            worker.poll()
        return {"coarse_it_per_s": (worker.latest_snapshot().iteration - it0)
                / (time.monotonic() - t0)}
    finally:
        worker.close()


def studio_run(head, scan_path: Path, flame_dir: Path, device: str, preset: str,
               seconds: float, detect: bool, backend: str | None,
               working_fps: float | None) -> dict:
    import polyscope as ps

    from reflame_app.main import init_polyscope, make_studio
    from reflame_app.window_driver import WindowDriver, process_cpu_seconds

    init_polyscope(backend)
    studio = make_studio(scan_path, flame_dir, device=device, preset=preset)
    if working_fps:
        studio.pacer.working_fps = working_fps
    app = studio.app
    for key, value in LONG_COARSE.items():
        app.config.set(key, value)
    out: dict = {}

    def measure(d: WindowDriver, name: str, during) -> dict:
        worker = app.worker
        snap = app.snapshot
        t0, it0 = time.monotonic(), snap.iteration if snap else 0
        c0, w0 = time.process_time(), process_cpu_seconds(worker.pid)
        n0 = len(d.frames)
        yield from during()
        dt = time.monotonic() - t0
        snap = app.snapshot
        out[name] = {
            "seconds": dt,
            "coarse_it_per_s": ((snap.iteration if snap else 0) - it0) / dt,
            "frames_per_s": (len(d.frames) - n0) / dt,
            "view_changes": d.view_changes(t0, t0 + dt),
            "studio_cpu_percent": 100 * (time.process_time() - c0) / dt,
            "worker_cpu_percent": 100 * (process_cpu_seconds(worker.pid) - w0) / dt,
        }

    def script(d: WindowDriver):
        d.move_window_to_origin()
        # As a user who opens a scan and then clicks Detect: the worker has started and
        # loaded the detector (it does so on its own when the scan opens).
        yield from d.wait(lambda: app.worker is not None and not app.worker.busy,
                          120, "the worker to start")
        if detect:
            t0 = time.monotonic()
            app.detect_landmarks(wait=False)
            yield from d.wait(lambda: not app.detecting, 300, "landmark detection")
            out["detect_s"] = time.monotonic() - t0
        else:
            app.editor.set_landmarks(head.true_landmark_set())
        app.start_session()
        app.fit.command("start")
        yield from d.wait(lambda: app.snapshot is not None and app.snapshot.stage == "coarse"
                          and app.snapshot.iteration >= 3, 300, "the coarse stage")
        yield from measure(d, "fitting_idle", lambda: d.sleep(seconds))
        w, h = ps.get_window_size()

        def turning():
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                d.drag(w // 2, h // 2, w // 5, 2.0)
                yield from d.sleep(2.2)

        yield from measure(d, "fitting_rotating", turning)
        app.fit.command("pause")
        yield from d.wait(lambda: app.fit.state == "paused", 30, "the pause")
        yield from d.sleep(2.0)  # the pacer's interaction window passes
        yield from measure(d, "paused_idle", lambda: d.sleep(min(seconds, 8.0)))

    WindowDriver(studio, script, x_input=backend is None or "egl" not in backend).run()
    out["errors"] = [m.text for m in app.messages.errors]
    out["pacer"] = {k: getattr(studio.pacer, k)
                    for k in ("interactive_fps", "working_fps", "idle_fps")}
    app.shutdown()
    ps.shutdown()  # before the display goes
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    p.add_argument("--seed", type=int, default=1, help="synthetic head (20k vertices)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="fast")
    p.add_argument("--headless-steps", type=int, default=150)
    p.add_argument("--landmarks", choices=("detected", "true"), default="detected",
                   help="true: the head's own (no detection timed)")
    p.add_argument("--backend", default=None,
                   help="Polyscope backend, e.g. openGL3_egl on a GPU server without X")
    p.add_argument("--working-fps", type=float, default=None,
                   help="the studio's frame rate while the fit runs (FramePacer default)")
    args = p.parse_args()
    import torch

    from reflame_app.window_driver import VirtualDisplay

    data = data_dir()
    template = load_flame_template(data / "flame")
    embedding = load_landmark_embedding(data / "flame")
    tex = np.asarray(Image.open(data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(template, tex, embedding, seed=args.seed)
    detect = args.landmarks == "detected"
    with tempfile.TemporaryDirectory() as tmp:
        scan_path = write_synthetic_head(head, tmp)
        ref = headless(head, template, embedding, args.device, args.preset,
                       args.headless_steps, detect)
        alone = worker_alone(head, template, embedding, args.device, args.preset,
                             args.seconds)
        run = (head, scan_path, data / "flame", args.device, args.preset, args.seconds, detect,
               args.backend, args.working_fps)
        if os.environ.get("DISPLAY") or (args.backend and "egl" in args.backend):
            gui = studio_run(*run)
        else:
            with VirtualDisplay() as display:
                os.environ["DISPLAY"] = display.name
                gui = studio_run(*run)
    ratio = {k: gui[k]["coarse_it_per_s"] / ref["coarse_it_per_s"]
             for k in ("fitting_idle", "fitting_rotating")}
    print(json.dumps({
        "scan": f"synthetic head seed {args.seed}, {len(head.scan.vertices)} vertices",
        "device": args.device, "preset": args.preset, "landmarks": args.landmarks,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "display": os.environ.get("DISPLAY"), "backend": args.backend,
        "studio_fps": {"working": gui["pacer"]["working_fps"], "idle": gui["pacer"]["idle_fps"],
                       "interactive": gui["pacer"]["interactive_fps"]},
        "headless": ref, "worker_without_window": alone, "studio": gui,
        "studio_vs_headless_it_per_s": ratio,
        "detect_studio_vs_cli": gui["detect_s"] / ref["detect_s"] if detect else None,
    }, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
