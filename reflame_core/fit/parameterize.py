"""Large-Steps parameterisation on any device.

``largesteps.geometry.compute_matrix`` (0.2.2) builds its matrix with ``device='cuda'`` hard
coded, so the matrix ``M = I + lambda * L`` (uniform Laplacian, the paper's default) is built
here on the vertices' device; the optimiser is largesteps' own. ``LaplacianSolve`` maps
differential coordinates back to vertices: largesteps' sparse Cholesky on the CPU; on a GPU,
for meshes of FLAME's size, one dense product with ``M^-1`` (computed once, 100 MB for 5023
vertices), which is a single kernel instead of a level-scheduled triangular solve.
"""

from __future__ import annotations

import atexit
import weakref

import largesteps.parameterize as _lsp
import torch
from largesteps.optimize import AdamUniform
from largesteps.parameterize import from_differential, to_differential
from largesteps.solvers import CholeskySolver

__all__ = [
    "AdamUniform", "LaplacianSolve", "from_differential", "laplacian_system", "to_differential",
]

# Largest vertex count solved through a dense inverse on a GPU (its memory grows as V^2).
DENSE_INVERSE_MAX_VERTICES = 20000


def laplacian_system(num_vertices: int, faces: torch.Tensor, lambda_: float) -> torch.Tensor:
    """Sparse (V,V) float32 ``I + lambda * L`` with L the uniform (graph) Laplacian, coalesced.

    Args:
        num_vertices: V.
        faces: (F,3) int64 on the target device.
        lambda_: smoothness; larger values give smoother steps (seed: 30).
    """
    dev = faces.device
    n = int(num_vertices)
    ii = faces[:, [1, 2, 0]].reshape(-1)
    jj = faces[:, [2, 0, 1]].reshape(-1)
    diag = torch.arange(n, device=dev)
    # Entries as flat keys row * V + col: a 1-D unique sorts and de-duplicates them at once
    # (unique over index pairs, dim=1, is slow), and sorted keys are the coalesced order.
    keys = torch.cat([ii * n + jj, jj * n + ii, diag * (n + 1)]).unique()
    rows, cols = keys // n, keys % n
    off = rows != cols
    degree = torch.bincount(rows[off], minlength=n).to(torch.float32)
    vals = torch.where(off, torch.full_like(degree[rows], -lambda_), 1.0 + lambda_ * degree[rows])
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), vals, (n, n), is_coalesced=True, check_invariants=False
    )


class LaplacianSolve:
    """``v = M^-1 u`` for one sparse symmetric positive definite ``M`` (V,V), with gradient.

    Args:
        matrix: ``laplacian_system``'s matrix, on the device of the coordinates to solve.
        dense: use a dense inverse (default: on CUDA when V <= DENSE_INVERSE_MAX_VERTICES).
    """

    def __init__(self, matrix: torch.Tensor, dense: bool | None = None) -> None:
        n = matrix.shape[0]
        if dense is None:
            dense = matrix.device.type == "cuda" and n <= DENSE_INVERSE_MAX_VERTICES
        self.inverse: torch.Tensor | None = None
        self.cholesky: CholeskySolver | None = None
        if dense:
            m = matrix.to_dense().double()
            self.inverse = torch.cholesky_inverse(torch.linalg.cholesky(m)).float()
        else:
            self.cholesky = CholeskySolver(matrix)
            _solvers.add(self)

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``M^-1 b`` for b (V,C), no gradient."""
        if self.inverse is not None:
            return self.inverse @ b.detach()
        return self.cholesky.solve(b.detach().contiguous())

    def __call__(self, u: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Vertices (V,3) for differential coordinates ``u`` (V,3), differentiable in ``u``.

        ``known``: ``M^-1 u`` already computed for this very ``u`` (the last step's result),
        returned as it is instead of solved again; the gradient is the same.
        """
        return _Solve.apply(u, self, known)


class _Solve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, solver, known):
        ctx.solver = solver
        return known.clone() if known is not None else solver.solve(u)

    @staticmethod
    def backward(ctx, grad):
        # M is symmetric: the gradient of M^-1 u is M^-1 grad.
        return ctx.solver.solve(grad), None, None


_solvers: weakref.WeakSet[LaplacianSolve] = weakref.WeakSet()


@atexit.register
def _release_solvers() -> None:
    # largesteps caches one Cholesky factorisation per matrix; dropping them (and ours) before
    # the interpreter tears down nanobind avoids its spurious "leaked instance" report.
    _lsp._cache.clear()
    for solver in list(_solvers):
        solver.cholesky = None
