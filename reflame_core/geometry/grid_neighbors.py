"""Exact k nearest neighbours among fixed 3-D points, in torch on any device (no KD-tree).

The points are bucketed in uniform grids (cell keys sorted once per cell size); a query looks
at the 27 cells around its own, each read up to a per-cell cap. The k found are exact whenever
the k-th lies no farther than the walls of that 3x3x3 block and no cell there was over the
cap; other queries try a finer or coarser grid, and the few that no grid suits fall back to a
chunked brute force. Everything is fixed-shape tensor work, so on a GPU it runs at memory
speed where ``scipy.spatial.cKDTree`` is a single-threaded CPU walk.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# The 27 cell offsets of a 3x3x3 block, (27,3).
_OFFSETS = torch.cartesian_prod(*(torch.arange(-1, 2),) * 3)
# Query-slot pairs (or query-point pairs in the fallback) held at once; bounds peak memory to
# a few hundred MB (about 24 bytes per pair).
_PAIRS_PER_CHUNK = 1 << 24


class GridNeighbors:
    """Nearest-neighbour index over ``points`` (M,3), on their device.

    Surface samples are far from uniform (a FLAME-derived scan is dense around the eyes and
    sparse at the back of the head), so there is one grid per cell size, ``cell * 2**level``:
    every query starts at level 0; one next to a crowded cell moves to finer levels, one
    whose k-th neighbour lies beyond the block's walls to coarser ones (coarse cells hold more
    points, so their cap grows 4x a level, as a surface's points per cell do), until its answer
    is exact. Where a level would read more slots than there are points, the query falls back
    to brute force. Levels are built when first needed.

    Args:
        points: (M,3) float32, M > 0.
        k: neighbours per query (at most M).
        cell: level-0 cell size in the points' units; default from the mean density of a
            surface sample (points on a head-like closed mesh, see ``_surface_cell``).
        cap: most points read per level-0 (and finer) cell; default 6k, at least 8.
    """

    def __init__(self, points: Tensor, k: int, *, cell: float | None = None,
                 cap: int | None = None):
        if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
            raise ValueError(
                f"GridNeighbors needs points (M,3) with M>0, got {tuple(points.shape)}")
        self.k = min(int(k), len(points))
        self.points = points.float().contiguous()
        self.device = points.device
        self.lo = self.points.min(0).values
        self.extent = (self.points.max(0).values - self.lo).clamp_min(1e-12)
        self.cell = float(cell) if cell is not None else _surface_cell(
            self.extent, len(points), self.k)
        self.cap = int(cap) if cap is not None else max(8, 6 * self.k)
        self.offsets = _OFFSETS.to(self.device)
        self._levels: dict[int, _Level] = {}

    def level(self, level: int) -> _Level | None:
        """The grid at ``level`` (built on first use); None where brute force is cheaper."""
        cap = self.cap * 4 ** max(level, 0)
        cell = self.cell * 2.0**level
        if 27 * cap >= len(self.points) or cell < 1e-6 * float(self.extent.max()):
            return None
        if level not in self._levels:
            self._levels[level] = _Level(self.points, self.lo, self.extent, cell, cap)
        return self._levels[level]

    def query(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """The k nearest points to each of ``queries`` (N,3).

        Returns:
            idx (N,k) int64 point indices, nearest first; by_grid (N,) bool (False where the
            brute-force fallback answered; for diagnostics).
        """
        q = queries.float()
        n = len(q)
        idx = torch.empty((n, self.k), dtype=torch.long, device=self.device)
        by_grid = torch.zeros(n, dtype=torch.bool, device=self.device)
        brute = []
        # (level, query indices, direction): 0 at the start, -1 going finer, +1 coarser.
        todo = [(0, torch.arange(n, device=self.device), 0)]
        while todo:
            level, rows, direction = todo.pop()
            grid = self.level(level)
            if grid is None:
                brute.append(rows)
                continue
            found, resolved, crowded = grid.query(q[rows], self.k, self.offsets)
            idx[rows[resolved]] = found[resolved]
            by_grid[rows[resolved]] = True
            finer = rows[~resolved & crowded]
            coarser = rows[~resolved & ~crowded]
            for more, step in ((finer, -1), (coarser, 1)):
                if len(more) == 0:
                    continue
                if direction in (0, step):
                    todo.append((level + step, more, step))
                else:  # crowded when finer, too far when coarser: rare, brute force
                    brute.append(more)
        rest = torch.cat(brute) if brute else rows[:0]
        if len(rest):
            idx[rest] = self._brute_query(q[rest])
        return idx, by_grid

    def _brute_query(self, q: Tensor) -> Tensor:
        step = max(1, _PAIRS_PER_CHUNK // len(self.points))
        out = []
        for s in range(0, len(q), step):
            d = torch.cdist(q[s:s + step], self.points,
                            compute_mode="donot_use_mm_for_euclid_dist")
            out.append(torch.topk(d, self.k, dim=1, largest=False, sorted=True).indices)
        return torch.cat(out)


class _Level:
    """One uniform grid over the points: occupied cell keys (sorted), their runs in the
    cell-sorted point order, and the points in that order."""

    def __init__(self, points: Tensor, lo: Tensor, extent: Tensor, cell: float, cap: int):
        self.cell = cell
        self.cap = cap
        self.lo = lo
        self.dims = (extent / cell).floor().long() + 1  # (3,) cells per axis
        ijk = ((points - lo) / cell).floor().long().minimum(self.dims - 1)
        key, order = torch.sort(self._key(ijk))
        self.keys, self.counts = torch.unique_consecutive(key, return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.order = order  # sorted slot -> point index
        self.sorted_xyz = points[order].T.contiguous()  # (3,M)

    def _key(self, ijk: Tensor) -> Tensor:
        return (ijk[..., 0] * self.dims[1] + ijk[..., 1]) * self.dims[2] + ijk[..., 2]

    def query(self, q: Tensor, k: int, offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per query (N,3): k nearest among the 27 cells (N,k), whether that is exact (N,),
        and whether a cell there held more than ``cap`` points (N,)."""
        n = len(q)
        idx = torch.empty((n, k), dtype=torch.long, device=q.device)
        resolved = torch.empty(n, dtype=torch.bool, device=q.device)
        crowded = torch.empty(n, dtype=torch.bool, device=q.device)
        step = max(1, _PAIRS_PER_CHUNK // (27 * self.cap))
        for s in range(0, n, step):
            sl = slice(s, s + step)
            idx[sl], resolved[sl], crowded[sl] = self._query_chunk(q[sl], k, offsets)
        return idx, resolved, crowded

    def _query_chunk(self, q: Tensor, k: int, offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = len(q)
        rel = (q - self.lo) / self.cell
        ijk = rel.floor().long()
        nb = ijk[:, None, :] + offsets[None]  # (n,27,3)
        inside = ((nb >= 0) & (nb < self.dims)).all(-1)
        key = torch.where(inside, self._key(nb), -1)
        pos = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
        found = inside & (self.keys[pos] == key)
        count = torch.where(found, self.counts[pos], 0)
        crowded = (count > self.cap).any(1)
        lane = torch.arange(self.cap, device=q.device)
        ok = lane < count[..., None]  # (n,27,cap)
        slot = torch.where(ok, self.starts[pos][..., None] + lane, 0).reshape(n, -1)
        ok = ok.reshape(n, -1)
        xyz = self.sorted_xyz
        d2 = ((xyz[0][slot] - q[:, 0:1]) ** 2 + (xyz[1][slot] - q[:, 1:2]) ** 2
              + (xyz[2][slot] - q[:, 2:3]) ** 2)
        d2 = torch.where(ok, d2, float("inf"))
        kd2, kpos = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        idx = self.order[slot.gather(1, kpos)]
        # Anything outside the 3x3x3 block is at least this far away.
        frac = rel - ijk
        wall = (torch.minimum(frac, 1.0 - frac).min(1).values + 1.0) * self.cell
        resolved = torch.isfinite(kd2[:, -1]) & (kd2[:, -1] <= wall * wall) & ~crowded
        return idx, resolved, crowded


def _surface_cell(extent: Tensor, m: int, k: int) -> float:
    """A cell size for M points spread over a closed surface filling a box of ``extent``.

    The surface's area is taken as that of the box's inscribed ellipsoid (a head); with
    density rho = M/area, k points lie within r = sqrt(k / (pi rho)); the cell is 2 r (at least
    the spacing of 2 points), which keeps about 4k points in a cell the surface crosses.
    """
    a, b, c = (float(x) / 2 for x in extent)
    p = 1.6075  # Knud Thomsen's approximation of an ellipsoid's area
    area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    rho = m / max(area, 1e-24)
    return 2.0 * math.sqrt(max(k, 2) / (math.pi * rho))
