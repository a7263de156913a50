"""Landmark detection on a head whose texture is a photogrammetry-sized image; prints JSON.

World heads (4000 vertices, scored seed 1001) carry a 1024² texture; scanners and
photogrammetry write 8-16K ones. Each head is detected with its texture as it is and with
the same texture upsampled (bicubic, same UVs) to each ``--sides``: landmarks within 2% of
head height, the median error, seconds and the process's peak memory so far (Linux).

    PYTHONPATH=. python benchmarks/bench_big_texture.py --sides 0 16384
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from reflame_core.fit.setup import SharedDetector
from reflame_core.landmarks.detect import detect_landmarks
from reflame_core.synthetic.scoring import landmark_errors
from reflame_core.synthetic.world import load_world_assets, make_world_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[0, 16384],
                    help="texture sides to run (0: the head's own texture)")
    ap.add_argument("--scenarios", nargs="+", default=["base", "proportions"])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "REFLAME_TEST_DATA", "../shared/data")))
    args = ap.parse_args()
    world = load_world_assets(args.data)
    detector = SharedDetector().get()
    rows = []
    for side in args.sides:  # one side per run gives clean memory peaks: run them apart
        for scenario in args.scenarios:
            head = make_world_head(world.template, world.texture, world.embedding, scenario,
                                   1001, target_vertices=4000)
            tex = head.scan.texture
            if side:
                tex = cv2.resize(tex, (side, side), interpolation=cv2.INTER_CUBIC)
            scan = replace(head.scan, texture=tex)
            t = time.perf_counter()
            lms = detect_landmarks(scan, backend=detector)
            seconds = time.perf_counter() - t
            err = landmark_errors(head, lms.positions(scan.vertices, scan.faces)[:68])
            rows.append({
                "scenario": scenario, "texture_side": int(tex.shape[0]),
                "within_2pct": round(float(np.mean(err < 0.02)), 4),
                "median": round(float(np.median(err)), 5), "seconds": round(seconds, 1),
                "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                      / 2**20, 2)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
