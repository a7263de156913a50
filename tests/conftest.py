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
