"""Which way a mesh's faces are wound: outward, as the renderer and the fit assume, or inward.

Exporters get this wrong as a whole (a mirroring transform baked in, a flipped axis) or per
part (a cap or a jaw exported separately). Every view test (a landmark seen from the front,
a fit pair whose normals agree) reads a face wound inward as seen from behind, so such a
scan loses its landmarks and its surface terms.
"""

from __future__ import annotations

import numpy as np

# A part whose outward balance (see ``outward_balance``) is below minus this is wound inward.
# Near zero (a flat patch, a soup of mixed winding) says nothing, and nothing is turned.
INWARD_BALANCE = 0.2
# Parts smaller than this share of the mesh's area follow the largest part.
MIN_PART_AREA = 0.01


def outward_balance(vertices: np.ndarray, faces: np.ndarray,
                    parts: np.ndarray | None = None,
                    centre: np.ndarray | None = None) -> np.ndarray:
    """How outward each part of ``faces`` (F,3) of ``vertices`` (V,3) is wound, in [-1, 1].

    Per part (``parts`` (F,) int labels 0..P-1; None: one part): the area-weighted mean of
    cos(angle) between each face's normal and the direction to the face from the part's area
    centroid (or from ``centre`` (3,), one point for every part). A sphere wound outward gives
    1 and wound inward -1; a head, a bust, a face-only shell or a cap lie well away from 0
    (their surface wraps around a point behind it); a flat patch is near 0. Returns (P,) float64.
    """
    tri = np.asarray(vertices, np.float64)[faces]
    labels = np.zeros(len(tri), np.int64) if parts is None else np.asarray(parts, np.int64)
    n = int(labels.max()) + 1 if len(labels) else 0
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # |cross| = 2 x area
    area = np.linalg.norm(cross, axis=1)
    total = np.bincount(labels, area, n)
    centres = tri.mean(1)
    if centre is None:
        centroid = np.stack([np.bincount(labels, area * centres[:, k], n) for k in range(3)], 1)
        out = centres - (centroid / np.maximum(total, 1e-300)[:, None])[labels]
    else:
        out = centres - np.asarray(centre, np.float64)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-300)
    balance = np.bincount(labels, np.einsum("fd,fd->f", cross, out), n)
    return np.where(total > 0, balance / np.maximum(total, 1e-300), 0.0)


def face_parts(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,) int64 label (0..P-1) of each face's connected part (faces sharing a vertex)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, np.int64)
    # A face's vertices joined in a chain join the face's part.
    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)),
                       shape=(num_vertices, num_vertices))
    _, vertex_part = connected_components(graph, directed=False)
    _, labels = np.unique(vertex_part[f[:, 0]], return_inverse=True)
    return labels.astype(np.int64)


def disagreeing_faces(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """(F,) bool: faces to reverse so that ``faces`` (F,3) agree across every edge two of
    them share (each runs the edge the other way), one choice per connected part; all False
    where they agree already.

    The faces of each part are 2-coloured over the double cover of their edge graph: node
    (face, kept) joins (neighbour, kept) where the two agree and (neighbour, reversed) where
    they do not. Each part's faces then fall into two mirror components, and the one with
    the lower label is kept. A surface that cannot be wound one way (a Moebius strip) has
    both nodes of a face in one component, and is left as it is.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, np.int64)
    n = len(f)
    start, end = f.ravel(), np.roll(f, -1, axis=1).ravel()  # half-edges start -> end
    key = np.minimum(start, end) * num_vertices + np.maximum(start, end)
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    count = np.diff(np.r_[first, len(k)])
    pair = first[count == 2]  # edges with exactly two faces (manifold)
    h1, h2 = order[pair], order[pair + 1]
    differ = start[h1] == start[h2]  # both run the edge the same way: wound apart
    if not differ.any():
        return np.zeros(n, bool)
    f1, f2 = h1 // 3, h2 // 3
    flip = differ.astype(np.int64)
    rows = np.concatenate([f1, f1 + n])
    cols = np.concatenate([f2 + n * flip, f2 + n * (1 - flip)])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(2 * n, 2 * n))
    _, label = connected_components(graph, directed=False)
    return label[n:] < label[:n]


def inward_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) bool: the faces of ``faces`` (F,3) to reverse so that every part is wound
    outward.

    First the faces of each part are made to agree across their shared edges
    (``disagreeing_faces``: a broken remesher or converter reverses faces at random). Then
    a part of at least ``MIN_PART_AREA`` of the mesh's area (the head, a cap, a jaw exported
    apart, an eyeball, whole or cut) is judged about its own centroid, unless that and the
    reading about the largest part's centroid clearly disagree (a cavity, such as a mouth's
    inside exported apart, faces its own axis but out of the head): it then follows the
    largest part. A smaller one (a
    piece that holes cut off a cheek or a socket: concave, its own centroid lies in front of
    it; a speck of noise) says little about itself and follows the largest part. Parts are
    joined by shared vertices, or by shared positions where no part dominates.
    """
    f = np.asarray(faces)
    if len(f) == 0:
        return np.zeros(0, bool)
    tri = np.asarray(vertices, np.float64)[f]
    face_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    corners, num_corners = f, len(vertices)
    parts = face_parts(corners, num_corners)
    area = np.bincount(parts, face_area)
    if area.max() < 0.5 * area.sum():
        # No part dominates: maybe faces that share corners by position, not by index (a
        # triangle soup, vertices split at every seam). Join them by position and look again.
        rows = np.ascontiguousarray(vertices, dtype=np.float32)
        _, same = np.unique(rows.view(np.dtype((np.void, 12))).ravel(), return_inverse=True)
        corners, num_corners = same.ravel()[f], int(same.max()) + 1
        parts = face_parts(corners, num_corners)
        area = np.bincount(parts, face_area)
    agree = disagreeing_faces(corners, num_corners)
    wound = np.where(agree[:, None], f[:, ::-1], f)
    own = outward_balance(vertices, wound, parts)
    inward = own < -INWARD_BALANCE
    # A cavity (a mouth's inside exported as its own part) faces its own axis, inward about
    # its own centre, but out of the head: where the two readings clearly disagree, the part
    # follows the largest one.
    largest = int(np.argmax(area))
    main = parts == largest
    head_centre = (tri[main].mean(1) * face_area[main, None]).sum(0) / face_area[main].sum()
    about_head = outward_balance(vertices, wound, parts, head_centre)
    disagree = (np.sign(own) != np.sign(about_head)) & (np.abs(own) > INWARD_BALANCE) \
        & (np.abs(about_head) > INWARD_BALANCE)
    inward[disagree] = inward[largest]
    small = area < MIN_PART_AREA * area.sum()
    inward[small] = inward[largest]
    return agree ^ inward[parts]

