"""GPU tests: run on a CUDA machine (the lent GPU), skipped elsewhere with the reason shown
in pytest's summary (CI has no GPU)."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here: GPU tests run on the lent GPU machine")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
