"""A user's session in the studio's real window, run by ``test_app_window.py`` under Xvfb.

``python tests/window_scenario.py FLAME_DIR TEXTURE OUT_DIR`` opens a synthetic head, detects
landmarks, starts the fit, turns the view with mouse drags while it runs, moves landmark 30
by clicking the scan with the FLAME overlay shown, exports, and prints one JSON line of what
it saw. Everything goes through ``ps.show()`` and X events, as for a user.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import polyscope as ps
from PIL import Image

from reflame_app.main import init_polyscope, make_studio
from reflame_app.scene import FIT
from reflame_app.window_driver import WindowDriver
from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.io.obj import write_obj
from reflame_core.synthetic.head import make_synthetic_head

NOSE_TIP = 30


def click_target(d: WindowDriver, vertices: np.ndarray, normals: np.ndarray,
                 near: np.ndarray, radius: float) -> int:
    """A scan vertex near ``near`` that faces the viewer and is seen away from the panels'
    edges of the window: the index of the one closest to ``radius`` from ``near``."""
    cam = ps.get_view_camera_parameters()
    facing = normals @ -cam.get_look_dir() > 0.7
    dist = np.linalg.norm(vertices - near, axis=1)
    w, _ = ps.get_window_size()
    best, best_err = -1, np.inf
    for i in np.flatnonzero(facing & (dist > 0.5 * radius) & (dist < 2 * radius)):
        x, _ = d.project(vertices[i])
        if w * 0.25 < x < w * 0.55 and abs(dist[i] - radius) < best_err:
            best, best_err = int(i), abs(dist[i] - radius)
    if best < 0:
        raise RuntimeError("no scan vertex to click near the nose tip")
    return best


def main() -> None:
    flame_dir, texture, out_dir = (Path(a) for a in sys.argv[1:4])
    template = load_flame_template(flame_dir)
    embedding = load_landmark_embedding(flame_dir)
    tex = np.asarray(Image.open(texture).convert("RGB"))
    head = make_synthetic_head(template, tex, embedding, seed=3, target_vertices=4000)
    s = head.scan
    out_dir.mkdir(parents=True, exist_ok=True)
    scan_path = write_obj(out_dir / "head.obj", s.vertices, s.faces, uv=s.uv,
                          uv_faces=s.uv_faces, texture=s.texture)

    import polyscope as ps

    init_polyscope()
    studio = make_studio(scan_path, flame_dir, preset="fast")
    app = studio.app
    app.views.set_layout(num_views=6, resolution=96)
    app.config.set("stages.coarse.steps", 100000)  # still running when the view turns
    seen: dict = {}

    def script(d: WindowDriver):
        d.move_window_to_origin()
        app.detect_landmarks(wait=False)
        yield from d.wait(lambda: not app.detecting, 300, "landmark detection")
        seen["landmarks_placed"] = int(app.editor.landmarks.placed_mask.sum())
        app.start_session()
        app.fit.command("start")
        yield from d.wait(lambda: app.snapshot is not None and app.snapshot.stage == "coarse"
                          and app.snapshot.iteration >= 2, 300, "the coarse stage")
        w, h = ps.get_window_size()
        # Sweeps back and forth until the fit has advanced 3 iterations meanwhile (a slow
        # machine needs more sweeps), at most 60 s: the test then says how far it got.
        t0, it0 = time.monotonic(), app.snapshot.iteration
        sweep = 1
        while time.monotonic() - t0 < 60 and (app.snapshot.iteration - it0 < 3
                                              or d.view_changes(t0, time.monotonic()) < 2):
            d.drag(w // 2, h // 2, sweep * w // 5, 2.0)
            yield from d.sleep(2.5)
            sweep = -sweep
        t1 = time.monotonic()
        seen["iterations_while_turning"] = app.snapshot.iteration - it0
        seen["view_changes_while_turning"] = d.view_changes(t0, t1)
        seen["frames_while_turning"] = sum(t0 <= t <= t1 for t, _ in d.frames)

        app.fit.command("pause")
        yield from d.wait(lambda: app.fit.state == "paused", 60, "the pause")
        ps.reset_camera_to_home_view()
        yield from d.settle()
        scan = app.scan_canonical
        lms = app.editor.landmarks
        nose = lms.positions(scan.vertices, scan.faces)[NOSE_TIP]
        height = float(np.ptp(scan.vertices[:, 1]))
        target = click_target(d, scan.vertices, scan.normals, nose, 0.03 * height)
        seen["overlay_shown"] = bool(ps.has_surface_mesh(FIT)
                                     and ps.get_surface_mesh(FIT).is_enabled())
        app.editor.select(NOSE_TIP, place=True)
        x, y = d.project(scan.vertices[target])
        seen["under_the_click"] = ps.pick(screen_coords=(x, y)).structure_name
        d.click(round(x), round(y))
        yield from d.wait(lambda: app.editor.landmarks.provenance[NOSE_TIP] == "edited", 20,
                          "the click to move the landmark")
        moved = app.editor.landmarks.positions(scan.vertices, scan.faces)[NOSE_TIP]
        seen["click_error_rel"] = float(np.linalg.norm(moved - scan.vertices[target]) / height)

        app.export(out_dir / "export")
        yield from d.wait(lambda: app.export_pending is None, 120, "the export")

    driver = WindowDriver(studio, script)
    driver.run()
    seen["errors"] = [m.text for m in app.messages.errors]
    seen["exported"] = sorted(p.name for p in (out_dir / "export").iterdir())
    app.shutdown()
    print(json.dumps(seen), flush=True)
    ps.shutdown()


if __name__ == "__main__":
    main()
