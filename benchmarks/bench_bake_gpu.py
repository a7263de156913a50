"""The texture bake on a torch device (``bake_texture(device=...)``) against the numpy bake.

One synthetic head (``synthetic/world.py``, scenario base, seed 1001, ~20k scan vertices; more
with ``--scan-vertices``: a head of N/4^s vertices subdivided s times at the midpoints, which
keeps its surface; 200000 -> two subdivisions of a 12.5k head),
baked from its true FLAME vertices at 1024². After a warm-up, each of ``--repeats`` runs times
the whole bake (no synchronisation inside) and, in a second bake, its parts (raster,
candidates, tests, colours, fill; the device is synchronised around each part, so the parts
add up to a little more than the total). The UV-raster cache is cleared before every bake: a
fit bakes once. Then the device bake is compared with the numpy (KD-tree) bake: texture PSNR,
valid-mask agreement, and the fraction of texels whose closest and ray hits land on the same
scan face (both queries on the numpy raster's texel points). Prints JSON.

    python3 benchmarks/bench_bake_gpu.py --device cuda --json OUT.json
    python3 benchmarks/bench_bake_gpu.py --device cpu --scan-vertices 4000    # CPU check
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding  # noqa: E402
from reflame_core.geometry.surface_query import MeshQuery, TorchMeshQuery  # noqa: E402
from reflame_core.io.mesh import Scan, vertex_normals  # noqa: E402
from reflame_core.render.backends import get_backend  # noqa: E402
from reflame_core.synthetic.remesh import UvMesh, subdivide  # noqa: E402
from reflame_core.synthetic.world import make_world_head  # noqa: E402
from reflame_core.texture import bake_device  # noqa: E402
from reflame_core.texture.bake import bake_texture, flame_uv_raster  # noqa: E402


def make_head(data: Path, seed: int, vertices: int):
    from PIL import Image

    template = load_flame_template(data / "flame")
    texture = np.asarray(Image.open(data / "textures" / "facescape_texmap.jpg").convert("RGB"))
    # Beyond the generator's ~20k: a smaller head, midpoint-subdivided s times (x4 each).
    times = max(0, math.ceil(math.log(vertices / 20000, 4) - 1e-9))
    head = make_world_head(template, texture, load_landmark_embedding(data / "flame"), "base",
                           seed, target_vertices=round(vertices / 4**times))
    scan = head.scan
    for _ in range(times):
        m = subdivide(UvMesh(scan.vertices.astype(np.float64), scan.faces, scan.uv.astype(
            np.float64), scan.uv_faces))
        scan = Scan(vertices=m.vertices.astype(np.float32), faces=m.faces,
                    uv=m.uv.astype(np.float32), uv_faces=m.uv_faces, texture=scan.texture)
    return template, head.true_vertices.astype(np.float32), scan


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("REFLAME_TEST_DATA", default)))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--scan-vertices", type=int, default=20000)
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(1)

    template, verts, scan = make_head(args.data, args.seed, args.scan_vertices)
    backend = get_backend("auto", device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    parts: dict[str, float] = collections.defaultdict(float)

    @contextlib.contextmanager
    def timer(name: str):
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        parts[name] += time.perf_counter() - t0

    def bake(with_timer: bool):
        bake_device._DEVICE_TEXELS.clear()  # a fit bakes once: its raster is not cached
        sync()
        t0 = time.perf_counter()
        out = bake_texture(verts, template, scan, resolution=args.resolution, device=device,
                           backend=backend, timer=timer if with_timer else None)
        sync()
        return out, time.perf_counter() - t0

    bake(False)  # warm-up: kernels, nvdiffrast context, allocator
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    totals, runs = [], []
    for _ in range(args.repeats):
        result, total = bake(False)
        totals.append(total)
        parts.clear()
        bake(True)
        runs.append({k: round(v, 4) for k, v in parts.items()})

    t0 = time.perf_counter()
    reference = bake_texture(verts, template, scan, resolution=args.resolution)
    cpu_bake_s = time.perf_counter() - t0

    # Same texel points for both queries: the numpy raster's.
    raster = flame_uv_raster(template, args.resolution)
    points = raster.interpolate(verts, template.faces)
    normals = raster.interpolate(vertex_normals(verts, template.faces), template.faces)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    max_distance = 0.03 * float((verts.max(0) - verts.min(0)).max())
    cpu_q = MeshQuery(scan.vertices, scan.faces)
    dev_q = TorchMeshQuery(scan.vertices, scan.faces, device=device)
    with torch.inference_mode():
        p_t = torch.as_tensor(points, device=device)
        n_t = torch.as_tensor(normals, device=device)
        seed = dev_q.closest(p_t)
        ray = dev_q.raycast(p_t, n_t, max_distance, seed=seed)
        dev_q.grid_resolved = [0, 0]
        dev_q.closest(p_t)
        by_grid = dev_q.grid_resolved[0] / max(dev_q.grid_resolved[1], 1)
    closest_face = cpu_q.closest(points).face
    ray_face = cpu_q.raycast(points, normals, max_distance).face

    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "backend": type(backend).__name__,
        "seed": args.seed,
        "scenario": "base",
        "scan_vertices": int(len(scan.vertices)),
        "scan_faces": int(len(scan.faces)),
        "resolution": args.resolution,
        "covered_texels": int(raster.covered.sum()),
        "total_s": [round(t, 4) for t in totals],
        "total_s_median": round(float(np.median(totals)), 4),
        "parts_s_synchronised": runs,
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        if cuda else None,
        "cpu_bake_s": round(cpu_bake_s, 3),
        "vs_cpu_bake": {
            "texture_psnr_db": round(psnr(result.texture, reference.texture), 2),
            "valid_agreement": float((result.valid == reference.valid).mean()),
            "valid_fraction_device": float(result.valid.mean()),
            "valid_fraction_cpu": float(reference.valid.mean()),
            "same_face_closest": float((seed.face.cpu().numpy() == closest_face).mean()),
            "same_face_raycast": float((ray.face.cpu().numpy() == ray_face).mean()),
            "candidates_exact_by_grid": round(by_grid, 5),
        },
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
