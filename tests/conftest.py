"""Shared fixtures. Test data comes from one place: $REFLAME_TEST_DATA (default ../shared/data).

CI always has that folder, so a missing one is an error, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_root() -> Path:
    root = Path(os.environ.get("REFLAME_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (root / "flame").is_dir():
        raise RuntimeError(
            f"Test data not found at {root} (expected flame/, scans/, textures/). "
            "Set REFLAME_TEST_DATA to the shared data folder."
        )
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the shared test data (flame/, scans/, textures/)."""
    return _data_root()


@pytest.fixture(scope="session")
def flame_dir(data_dir: Path) -> Path:
    """Folder with flame_template.npz, head_template.obj, landmark_embedding.npy."""
    return data_dir / "flame"


@pytest.fixture(scope="session")
def flame_template(flame_dir: Path):
    from reflame_core.assets.flame import load_flame_template

    return load_flame_template(flame_dir)


@pytest.fixture(scope="session")
def landmark_embedding(flame_dir: Path):
    from reflame_core.assets.flame import load_landmark_embedding

    return load_landmark_embedding(flame_dir)


@pytest.fixture(scope="session")
def facescape_texture(data_dir: Path):
    """(1024,1024,3) uint8 real face texture in FLAME UV space (as stored on disk)."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(data_dir / "textures" / "facescape_texmap.jpg").convert("RGB"))


@pytest.fixture(scope="session")
def small_synthetic_head(flame_template, landmark_embedding, facescape_texture):
    """A ~4k-vertex textured synthetic head with known truth (seed 0)."""
    from reflame_core.synthetic.head import SMALL_TARGET_VERTICES, make_synthetic_head

    return make_synthetic_head(flame_template, facescape_texture, landmark_embedding, seed=0,
                               target_vertices=SMALL_TARGET_VERTICES)
