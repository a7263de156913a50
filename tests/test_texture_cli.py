"""``reflame texture FIT_DIR SCAN`` end to end on a synthetic head written to disk."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from reflame_core.assets.flame import load_flame_template, load_landmark_embedding
from reflame_core.errors import InputFileError
from reflame_core.io.obj import write_obj
from reflame_core.io.scan import load_scan
from reflame_core.synthetic.head import make_synthetic_head, write_synthetic_head
from reflame_core.texture import cli


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_texture_command_writes_a_textured_flame_obj(flame_dir, data_dir, tmp_path):
    template = load_flame_template(flame_dir)
    texture = np.asarray(Image.open(data_dir / "textures" / "facescape_texmap.jpg").convert("RGB"))
    head = make_synthetic_head(
        template, texture, load_landmark_embedding(flame_dir), seed=2, target_vertices=4000
    )
    scan_path = write_synthetic_head(head, tmp_path / "scan")
    fit_dir = tmp_path / "fit"
    write_obj(fit_dir / "fit.obj", head.true_vertices, template.faces,
              uv=template.uv, uv_faces=template.uv_faces)
    (fit_dir / "transform.json").write_text(
        json.dumps({"scan_to_canonical": head.to_canonical.to_dict()})
    )
    out = tmp_path / "out"
    args = _parse(["texture", str(fit_dir), str(scan_path), "--resolution", "128",
                   "--out", str(out), "--flame-dir", str(flame_dir)])
    assert args.handler(args) == 0
    result = load_scan(out / "fit_textured.obj", require_texture=True)
    assert result.texture.shape == (128, 128, 3)
    np.testing.assert_allclose(result.vertices, head.true_vertices, atol=1e-4)
    assert result.texture.std() > 10  # a real picture, not a flat fill

    missing = _parse(["texture", str(tmp_path / "nowhere"), str(scan_path),
                      "--flame-dir", str(flame_dir)])
    with pytest.raises(InputFileError, match="fit.obj"):
        missing.handler(missing)
