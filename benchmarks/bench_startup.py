"""What ``reflame fit`` spends before its first step, in one fresh process; prints JSON.

    python benchmarks/bench_startup.py SCAN.obj [--flame-dir DIR] [--device cuda]

Times, in order: importing torch, starting CUDA, importing the fitting code (FitSession and
what it imports: largesteps, scipy, ...), loading the renderer backend (nvdiffrast's plugin,
built once per machine; the torch rasterizer on the CPU), reading the FLAME files, reading the
scan.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("scan", type=Path)
    ap.add_argument("--flame-dir", type=Path, default=Path(os.environ.get(
        "REFLAME_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "flame")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    times: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = now - t
        t = now

    import torch

    lap("import_torch")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
    lap("cuda_init")
    import reflame_core.fit.session  # noqa: F401

    lap("import_fit_code")
    from reflame_core.render.backends import get_backend

    get_backend("auto", torch.device(device))
    lap("render_backend")
    from reflame_core.fit.setup import load_flame

    load_flame(args.flame_dir)
    lap("load_flame")
    from reflame_core.io.scan import load_scan

    scan = load_scan(args.scan)
    lap("load_scan")
    result = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch": torch.__version__,
        "scan_vertices": int(len(scan.vertices)),
        "seconds": times,
        "total_seconds_in_process": time.perf_counter() - T0,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
