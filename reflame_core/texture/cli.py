"""``reflame texture FIT_DIR SCAN``: bake (and optionally refine) the scan's texture onto a fit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from reflame_core.errors import InputFileError, ReflameError

MIN_RESOLUTION, MAX_RESOLUTION = 16, 8192
# Below this fraction of FLAME's UV charts coloured from the scan, the scan is not the one
# that was fitted (or the fit is far off it): the texture would be a flat fill, so fail.
MIN_SOURCED_FRACTION = 0.2
TEXTURE_NAME = "fit_textured"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "texture",
        help="bake the scan's texture into FLAME UV space for a finished fit",
        description="Read FIT_DIR/fit.obj (what `reflame fit` writes, scan frame), bake SCAN's "
        "texture onto it and write an OBJ + MTL + PNG in FLAME topology with FLAME UVs. "
        "Existing output files are never overwritten: each is renamed to "
        "NAME.YYYYmmdd-HHMMSS.bak.EXT first. A scan that does not match the fit (too few "
        "texels found on it) is an error and writes nothing; errors exit 2.",
    )
    p.add_argument("fit_dir", type=Path, help="folder written by `reflame fit`")
    p.add_argument("scan", type=Path, help="the textured scan that was fitted")
    p.add_argument("--resolution", type=int, default=1024,
                   help=f"texture size ({MIN_RESOLUTION}-{MAX_RESOLUTION}, 512-4096 typical)")
    p.add_argument("--method", choices=("normal_ray", "closest"), default="normal_ray")
    p.add_argument("--refine-steps", type=int, default=0, help="differentiable refinement steps")
    p.add_argument("--out", type=Path, help="output folder (default: FIT_DIR)")
    p.add_argument("--flame-dir", type=Path, help="folder with the FLAME files")
    p.set_defaults(handler=run_texture)


def run_texture(args: argparse.Namespace) -> int:
    from reflame_core.assets.flame import load_flame_template
    from reflame_core.assets.locate import find_flame_dir
    from reflame_core.geometry.similarity import Similarity
    from reflame_core.io.output_folder import check_output_dir, prepare_output_dir
    from reflame_core.io.scan import load_scan
    from reflame_core.texture.bake import bake_texture
    from reflame_core.texture.export import export_textured_fit

    if not MIN_RESOLUTION <= args.resolution <= MAX_RESOLUTION:
        raise ReflameError(
            f"--resolution {args.resolution}: use {MIN_RESOLUTION}-{MAX_RESOLUTION}")
    if args.refine_steps < 0:
        raise ReflameError(f"--refine-steps {args.refine_steps}: must be >= 0")
    fit_path = args.fit_dir / "fit.obj"
    if not fit_path.is_file():
        raise InputFileError(fit_path, "not found: FIT_DIR must be a folder written by reflame fit")
    out_dir = check_output_dir(args.out or args.fit_dir)
    template = load_flame_template(find_flame_dir(args.flame_dir))
    fit = load_scan(fit_path)
    if fit.vertices.shape != template.vertices.shape:
        raise InputFileError(
            fit_path, f"has {len(fit.vertices)} vertices, not FLAME's {len(template.vertices)}"
        )
    scan = load_scan(args.scan, require_texture=True)
    t0 = time.perf_counter()
    bake = bake_texture(
        fit.vertices, template, scan, resolution=args.resolution, method=args.method
    )
    texture = bake.texture
    if args.refine_steps > 0:
        from reflame_core.render.cameras import OrbitCameras
        from reflame_core.render.renderer import MeshRenderer
        from reflame_core.texture.refine import refine_texture

        transform = args.fit_dir / "transform.json"
        try:
            sim = Similarity.from_dict(json.loads(transform.read_text())["scan_to_canonical"])
        except (OSError, KeyError, ValueError) as e:
            problem = f"cannot read the scan->canonical transform ({e})"
            raise InputFileError(transform, problem) from None
        renderer = MeshRenderer(OrbitCameras())
        texture = refine_texture(
            bake, fit.vertices, template, scan, renderer,
            steps=args.refine_steps, to_canonical=sim,
        )
    sourced = sourced_fraction(bake)
    if sourced < MIN_SOURCED_FRACTION:
        raise ReflameError(
            f"{args.scan}: only {100 * sourced:.1f}% of the texture could be taken from this "
            f"scan (at least {100 * MIN_SOURCED_FRACTION:g}% expected): is it the scan that "
            f"{fit_path} was fitted to? Nothing written")

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    names = [f"{TEXTURE_NAME}{ext}" for ext in (".obj", ".mtl", ".png")]
    prepare_output_dir(out_dir, names, log)
    out = export_textured_fit(out_dir, fit.vertices, template, texture, name=TEXTURE_NAME)
    log(
        f"wrote {out} ({args.resolution}², {100 * sourced:.1f}% of the face texture from the "
        f"scan, {time.perf_counter() - t0:.1f} s)"
    )
    return 0


def sourced_fraction(bake) -> float:
    """Fraction of the texels inside FLAME's UV charts whose colour came from the scan
    (``BakeResult.source_distance`` is finite exactly inside the charts)."""
    inside = np.isfinite(bake.source_distance)
    return float(bake.valid[inside].mean()) if inside.any() else 0.0
