"""Row gathers whose backward pass stays fast on CUDA."""

from __future__ import annotations

import torch


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a [N,*] table and an int index of any shape -> [*index.shape, *].

    Uses ``index_select``: its backward is an atomic ``index_add``, whereas the backward of
    advanced indexing serialises repeated indices on CUDA (seconds when thousands of pixels
    read the same vertex).
    """
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])
