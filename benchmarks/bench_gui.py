"""GUI frame time while a real FitController fits on CPU (Polyscope mock backend, or a real
window with --backend ''). Prints JSON: per-frame seconds of the user callback and of the
whole frame_tick (callback + Polyscope update/render)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import polyscope as ps

from reflame_app.main import init_polyscope, make_studio


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scan", default=None)
    p.add_argument("--flame-dir", default=None)
    p.add_argument("--backend", default="openGL_mock")
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    data = Path(os.environ.get("REFLAME_TEST_DATA", Path(__file__).resolve().parents[2]
                               / "shared" / "data"))
    scan = args.scan or data / "scans" / "lee_perry_smith" / "LeePerrySmith.glb"
    init_polyscope(args.backend)
    ps.set_frame_tick_limit_fps_mode("block_to_hit_target")  # the app's 60 fps cap
    ps.set_max_fps(60)
    studio = make_studio(scan, args.flame_dir or data / "flame", preset="fast")
    app = studio.app
    app.start_session()
    app.fit.command("start")
    frame_s = []
    studio.frame_seconds.clear()
    start_version = app.controller.latest_snapshot().version
    t_end = None
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:  # paced at 60 fps like the real window
        t0 = time.perf_counter()
        ps.frame_tick()
        frame_s.append(time.perf_counter() - t0)
    t_end = app.controller.latest_snapshot().version
    app.shutdown()
    f = np.asarray(frame_s)
    cb = np.asarray(studio.frame_seconds)
    print(json.dumps({
        "backend": args.backend, "frames": len(f), "fit_steps_during": t_end - start_version,
        "frame_ms_mean": 1e3 * f.mean(), "frame_ms_p95": 1e3 * np.percentile(f, 95),
        "callback_ms_mean": 1e3 * cb.mean(), "callback_ms_p95": 1e3 * np.percentile(cb, 95),
        "fps_mean": 1.0 / f.mean(), "frame_ms_max": 1e3 * f.max(),
        "fit_stage_at_end": app.snapshot.stage if app.snapshot is not None else None,
        "cpu_cores": os.cpu_count(),
        "errors": [m.text for m in app.messages.errors],
    }, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
