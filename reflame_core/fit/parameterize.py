"""Large-Steps parameterisation on any device.

``largesteps.geometry.compute_matrix`` (0.2.2) builds its matrix with ``device='cuda'`` hard
coded, so the matrix ``M = I + lambda * L`` (uniform Laplacian, the paper's default) is built
here on the vertices' device; the optimiser is largesteps' own. ``LaplacianSolve`` maps
differential coordinates back to vertices: largesteps' sparse Cholesky on the CPU; on a GPU,
for meshes of FLAME's size, one dense product with ``M^-1`` (computed once, 100 MB for 5023
vertices), which is a single kernel instead of a level-scheduled triangular solve.

``AdamUniform`` is largesteps' optimiser re-stated without ``torch.optim.Optimizer``: that
base class's constructor imports ``torch._dynamo`` (and sympy) on first use, 3-10 s before
the first deformation step of every process.
"""

from __future__ import annotations

import atexit
import warnings
import weakref

import largesteps.parameterize as _lsp
import torch
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
    with warnings.catch_warnings():
        # torch 2.11 warns that invariant checks are off even when told so explicitly; the
        # keys above are valid by construction, and the warning only puzzles users.
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        return torch.sparse_coo_tensor(
            torch.stack([rows, cols]), vals, (n, n), is_coalesced=True, check_invariants=False
        )


class AdamUniform:
    """Adam with uniform scaling by the largest second moment (largesteps 0.2.2's
    ``AdamUniform``, the same arithmetic): ``p -= lr * m1 / (1e-8 + max(sqrt(m2)))``.

    The parts of the ``torch.optim.Optimizer`` interface the stages use: ``param_groups``
    (``lr`` can be changed between steps), ``state`` (keyed by parameter), ``zero_grad``,
    ``step``, ``state_dict`` / ``load_state_dict`` (keyed by the parameter's position).
    """

    def __init__(self, params, lr: float = 0.1, betas: tuple[float, float] = (0.9, 0.999)):
        self.param_groups = [{"params": list(params), "lr": lr, "betas": betas}]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr = group["lr"]
            b1, b2 = group["betas"]
            for p in group["params"]:
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["g1"] = torch.zeros_like(p)
                    state["g2"] = torch.zeros_like(p)
                g1, g2 = state["g1"], state["g2"]
                state["step"] += 1
                grad = p.grad
                g1.mul_(b1).add_(grad, alpha=1 - b1)
                g2.mul_(b2).add_(grad.square(), alpha=1 - b2)
                m1 = g1 / (1 - b1 ** state["step"])
                m2 = g2 / (1 - b2 ** state["step"])
                p.sub_(m1 / (1e-8 + m2.sqrt().max()), alpha=lr)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """``{"state": {position: {...}}, "param_groups": [...]}`` (not copied)."""
        return {
            "state": {i: self.state[p] for i, p in enumerate(self._params()) if p in self.state},
            "param_groups": [{k: v for k, v in g.items() if k != "params"}
                             for g in self.param_groups],
        }

    def load_state_dict(self, state: dict) -> None:
        params = self._params()
        self.state = {params[i]: dict(v) for i, v in state["state"].items()}
        for group, saved in zip(self.param_groups, state["param_groups"], strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})


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
