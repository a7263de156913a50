"""Remeshing that changes topology but keeps the surface and its per-corner UVs.

Used to turn a (deformed) FLAME template into a scan-like mesh with a different topology:
midpoint subdivision, random edge collapses and in-surface vertex jitter. Every operation
keeps vertices on the input surface and UVs exact away from UV seams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UvMesh:
    """Vertices (V,3) float64, faces (F,3), uv (T,2) float64, uv_faces (F,3)."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray


def _midpoints(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points with one midpoint per unique edge appended; (F,3) ids of edge (k, k+1) mids."""
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, inv = np.unique(e, axis=0, return_inverse=True)
    mids = (points[uniq[:, 0]] + points[uniq[:, 1]]) / 2
    return np.concatenate([points, mids]), len(points) + inv.reshape(-1, 3)


def _split(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    a, b, c = f.T
    m0, m1, m2 = m.T  # mids of ab, bc, ca
    return np.concatenate([
        np.stack([a, m0, m2], 1), np.stack([m0, b, m1], 1),
        np.stack([m2, m1, c], 1), np.stack([m0, m1, m2], 1),
    ])


def subdivide(mesh: UvMesh) -> UvMesh:
    """1->4 midpoint subdivision; UVs split per UV edge, so seams stay seams."""
    v, mv = _midpoints(mesh.vertices, mesh.faces)
    uv, mt = _midpoints(mesh.uv, mesh.uv_faces)
    return UvMesh(v, _split(mesh.faces, mv), uv, _split(mesh.uv_faces, mt))


def _unit_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def _compact(v: np.ndarray, f: np.ndarray, uv: np.ndarray, uvf: np.ndarray) -> UvMesh:
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    f, uvf = f[keep], uvf[keep]
    used_v, f = np.unique(f, return_inverse=True)
    used_t, uvf = np.unique(uvf, return_inverse=True)
    return UvMesh(v[used_v], f.reshape(-1, 3), uv[used_t], uvf.reshape(-1, 3))


def collapse_pass(
    mesh: UvMesh, rng: np.random.Generator, max_collapses: int, max_dihedral_cos: float = 0.97
) -> UvMesh:
    """Collapse up to ``max_collapses`` random, independent interior edges to their midpoints.

    Only edges whose two ends lie off UV seams and off the boundary are collapsed (so the
    midpoint's UV is exact), with the link condition and a no-flip check; collapses in one
    pass touch disjoint neighbourhoods, so they do not interact.
    """
    v, f = mesh.vertices.copy(), mesh.faces
    uv, uvf = mesh.uv.copy(), mesh.uv_faces
    nv = len(v)
    edges = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    pairs = np.unique(np.stack([f.ravel(), uvf.ravel()], 1), axis=0)
    uv_count = np.bincount(pairs[:, 0], minlength=nv)
    vert_uv = np.full(nv, -1)
    vert_uv[pairs[:, 0]] = pairs[:, 1]
    frozen = uv_count != 1
    frozen[uniq[counts != 2].ravel()] = True

    nbrs: list[set[int]] = [set() for _ in range(nv)]
    for a, b in uniq.tolist():
        nbrs[a].add(b)
        nbrs[b].add(a)
    vf_order = np.argsort(f.ravel(), kind="stable")
    vf_start = np.searchsorted(f.ravel()[vf_order], np.arange(nv + 1))
    normals = _unit_normals(v, f)

    locked = frozen.copy()
    remap = np.arange(nv)
    uv_remap = np.arange(len(uv))
    done = 0
    for e in rng.permutation(len(uniq)):
        if done >= max_collapses:
            break
        a, b = (int(x) for x in uniq[e])
        if locked[a] or locked[b] or len(nbrs[a] & nbrs[b]) != 2:
            continue
        mid = (v[a] + v[b]) / 2
        ring = np.unique(np.concatenate([vf_order[vf_start[a]:vf_start[a + 1]] // 3,
                                         vf_order[vf_start[b]:vf_start[b + 1]] // 3]))
        rf = f[ring]
        survive = ~((rf == a).any(1) & (rf == b).any(1))
        wing = normals[ring[~survive]]
        if len(wing) != 2 or wing[0] @ wing[1] < max_dihedral_cos:
            continue  # a creased edge: collapsing it would cut into the surface
        moved = v[rf[survive]]
        moved[rf[survive] == a] = mid
        moved[rf[survive] == b] = mid
        n_new = np.cross(moved[:, 1] - moved[:, 0], moved[:, 2] - moved[:, 0])
        n_new /= np.maximum(np.linalg.norm(n_new, axis=1, keepdims=True), 1e-30)
        if (np.einsum("ij,ij->i", n_new, normals[ring[survive]]) < 0.9).any():
            continue
        v[a] = mid
        remap[b] = a
        ua, ub = vert_uv[a], vert_uv[b]
        uv[ua] = (uv[ua] + uv[ub]) / 2
        uv_remap[ub] = ua
        for x in nbrs[a] | nbrs[b] | {a, b}:
            locked[x] = True
        done += 1
    return _compact(v, remap[f], uv, uv_remap[uvf])


def decimate(mesh: UvMesh, target_vertices: int, rng: np.random.Generator) -> UvMesh:
    """Random edge collapses until about ``target_vertices`` remain (or no edge can go)."""
    while len(mesh.vertices) > target_vertices:
        before = len(mesh.vertices)
        mesh = collapse_pass(mesh, rng, before - target_vertices)
        if len(mesh.vertices) == before:
            break
    return mesh


def jitter_in_surface(
    mesh: UvMesh, rng: np.random.Generator, amount: tuple[float, float] = (0.1, 0.25)
) -> UvMesh:
    """Move every vertex a random fraction towards the centroid of a random incident face.

    New positions lie on the input surface, so no vertex stays where an input vertex was.
    The UV of each (vertex, UV index) pair moves with it: exactly in the chosen face's UV
    chart; on the other side of a UV seam by that face's affine map, extrapolated.
    """
    v, f, uv, uvf = mesh.vertices, mesh.faces, mesh.uv, mesh.uv_faces
    nv = len(v)
    corner_v = f.ravel()
    # A random incident face (and its corner) per vertex.
    order = rng.permutation(corner_v.size)
    first = np.full(nv, -1)
    first[corner_v[order]] = order  # any one of each vertex's corners: order is random
    if (first < 0).any():
        raise ValueError("mesh has unreferenced vertices")
    face = first // 3
    alpha = rng.uniform(*amount, size=nv)
    new_v = v + alpha[:, None] * (v[f[face]].mean(1) - v)

    # One UV per (vertex, UV index) pair, computed in a face that has that pair.
    pair_key = np.stack([corner_v, uvf.ravel()], 1)
    pairs, pair_of_corner = np.unique(pair_key, axis=0, return_inverse=True)
    pair_of_corner = pair_of_corner.reshape(-1)
    rep = np.full(len(pairs), -1)
    rep[pair_of_corner] = np.arange(corner_v.size)
    chosen_pair = pair_of_corner[first]
    rep[chosen_pair] = first  # prefer the face the vertex moved into
    rf, rk = rep // 3, rep % 3
    pv = pairs[:, 0]
    # Express the displacement in the representative face's (edge1, edge2) frame.
    i0, i1, i2 = f[rf, rk], f[rf, (rk + 1) % 3], f[rf, (rk + 2) % 3]
    e1, e2 = v[i1] - v[i0], v[i2] - v[i0]
    d = new_v[pv] - v[pv]
    g = np.stack([np.stack([np.einsum("ij,ij->i", e1, e1), np.einsum("ij,ij->i", e1, e2)], 1),
                  np.stack([np.einsum("ij,ij->i", e1, e2), np.einsum("ij,ij->i", e2, e2)], 1)], 1)
    rhs = np.stack([np.einsum("ij,ij->i", d, e1), np.einsum("ij,ij->i", d, e2)], 1)
    beta = np.linalg.solve(g, rhs[..., None])[..., 0]
    t0, t1, t2 = uvf[rf, rk], uvf[rf, (rk + 1) % 3], uvf[rf, (rk + 2) % 3]
    new_uv = uv[t0] + beta[:, :1] * (uv[t1] - uv[t0]) + beta[:, 1:] * (uv[t2] - uv[t0])
    return UvMesh(new_v, f, new_uv, pair_of_corner.reshape(-1, 3))
