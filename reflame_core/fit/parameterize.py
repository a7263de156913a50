"""Large-Steps parameterisation on any device.

``largesteps.geometry.compute_matrix`` (0.2.2) builds its matrix with ``device='cuda'`` hard
coded, so the matrix ``M = I + lambda * L`` (uniform Laplacian, the paper's default) is built
here on the vertices' device; solving and the optimiser are largesteps' own.
"""

from __future__ import annotations

import atexit

import largesteps.parameterize as _lsp
import torch
from largesteps.optimize import AdamUniform
from largesteps.parameterize import from_differential, to_differential

__all__ = ["AdamUniform", "from_differential", "laplacian_system", "to_differential"]


def laplacian_system(num_vertices: int, faces: torch.Tensor, lambda_: float) -> torch.Tensor:
    """Sparse (V,V) float32 ``I + lambda * L`` with L the uniform (graph) Laplacian.

    Args:
        num_vertices: V.
        faces: (F,3) int64 on the target device.
        lambda_: smoothness; larger values give smoother steps (seed: 30).
    """
    dev = faces.device
    ii = faces[:, [1, 2, 0]].reshape(-1)
    jj = faces[:, [2, 0, 1]].reshape(-1)
    adj = torch.stack([torch.cat([ii, jj]), torch.cat([jj, ii])]).unique(dim=1)
    ones = torch.ones(adj.shape[1], device=dev)
    diag = torch.arange(num_vertices, device=dev)
    # Coalescing sums duplicates: the diagonal accumulates each vertex's degree.
    idx = torch.cat([adj, torch.stack([adj[0], adj[0]]), torch.stack([diag, diag])], dim=1)
    vals = torch.cat([-lambda_ * ones, lambda_ * ones, torch.ones(num_vertices, device=dev)])
    return torch.sparse_coo_tensor(
        idx, vals, (num_vertices, num_vertices), check_invariants=True
    ).coalesce()


@atexit.register
def _release_solvers() -> None:
    # largesteps caches one Cholesky factorisation per matrix; dropping them before the
    # interpreter tears down nanobind avoids its spurious "leaked instance" report.
    _lsp._cache.clear()
