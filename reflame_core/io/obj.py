"""Wavefront OBJ/MTL: a fast vectorised reader that keeps UV seams, and an atomic writer.

The reader never welds or splits vertices: ``v`` lines are the geometry, ``vt`` lines the
per-corner UVs (through ``uv_faces``), so a 5023-vertex FLAME OBJ stays 5023 vertices.
Polygons are fan-triangulated; negative (relative) indices and the ``v``, ``v/vt``,
``v/vt/vn`` and ``v//vn`` corner forms are accepted. The work per line is a C-level
``str`` operation; all index arithmetic is numpy, so millions of faces load in seconds.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reflame_core.errors import ScanError
from reflame_core.io.atomic import atomic_write


@dataclass
class ObjData:
    """What an OBJ file holds, indices 0-based.

    Attributes:
        vertices: (V,3) float64.
        faces: (F,3) int64, fan-triangulated.
        uv: (T,2) float64 or None; uv_faces: (F,3) int64 or None.
        face_material: (F,) int64 index into ``materials`` (-1 before any ``usemtl``).
        materials: material names in order of first ``usemtl``.
        mtllibs: MTL file names as written in the OBJ (may contain spaces).
        vertex_colors: (V,3) uint8 RGB where every ``v`` line carries one (``v x y z r g b``,
            as scanners and MeshLab write them: 0-1, or 0-255), else None.
        untextured_faces: faces without texture coordinates in a file whose other faces have
            them; their corners index a placeholder (0, 0) appended to ``uv``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None
    uv_faces: np.ndarray | None
    face_material: np.ndarray
    materials: list[str] = field(default_factory=list)
    mtllibs: list[str] = field(default_factory=list)
    vertex_colors: np.ndarray | None = None
    untextured_faces: int = 0


def read_text(path: Path, what: str) -> str:
    """The file as text: UTF-8, with bytes that are not UTF-8 (a latin-1 texture name, say)
    kept as surrogate escapes, so a file name read from it maps back to the same bytes on
    disk and is found."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ScanError(path, f"cannot read {what} ({e.strerror or e})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Windows tools save UTF-16 with a BOM
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ScanError(path, f"the {what} says it is UTF-16 but is not") from None
    if b"\0" in data[:4096]:
        raise ScanError(path, f"the {what} is binary data, not text (is it another format "
                        "renamed?)")
    # A UTF-8 byte-order mark would glue itself to the first keyword.
    return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")


def _check_not_cut(path: Path, text: str, lines: list[str]) -> None:
    """ScanError when the file ends in the middle of a record (a truncated download or copy).

    Only a last line without a newline is suspect; it is cut when it has fewer fields than
    the previous record of its kind (a face: fewer than 3 corners, as faces of any corner
    count mix), or ends inside a face corner (``f 1/2/``, or a corner of another form than
    the previous face's).
    """
    if not lines or text.endswith(("\n", "\r")):
        return
    last = lines[-1].strip()
    kind = last.split(" ", 1)[0]
    if kind not in ("v", "vt", "vn", "f"):
        return
    prev = next((ln.strip() for ln in reversed(lines[:-1]) if ln.startswith(kind + " ")), None)
    fields = len(last.split())
    if kind == "f":
        cut = last.endswith("/") or fields < 4 or (
            prev is not None and last.split()[-1].count("/") != prev.split()[-1].count("/"))
    else:
        cut = prev is not None and fields < len(prev.split())
    if cut:
        raise ScanError(path, f"line {len(lines)}: the file ends in the middle of a "
                              f"'{kind}' record (truncated?)")


def _parse_numbers(text: str, dtype: type) -> np.ndarray:
    """All whitespace-separated numbers in ``text``; ValueError on anything else."""
    with warnings.catch_warnings():
        # numpy signals unparsable text with a DeprecationWarning and a truncated result.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=dtype, sep=" ")
        except DeprecationWarning:
            raise ValueError("a value is not a number") from None


def _floats(path: Path, bodies: list[str], what: str, ncols: int,
            positions: list[int] | None = None) -> np.ndarray:
    """Parse ``bodies`` (one string of numbers per line) into (N, ncols) float64.

    Lines may carry extra columns (``v x y z r g b``, ``vt u v w``); the first ``ncols`` are kept.
    """
    return _number_rows(path, bodies, what, ncols, positions)[:, :ncols]


def _not_a_number(bodies: list[str], positions: list[int] | None) -> str:
    """Where the first value that is no number is, and what it is, for an error message."""
    for k, body in enumerate(bodies):
        for token in body.split():
            try:
                float(token)
            except ValueError:
                where = f"line {positions[k] + 1}: " if positions is not None else ""
                comma = " (a decimal comma? export with decimal points)" if "," in token else ""
                return f"{where}{token[:40]!r} is not a number{comma}"
    return "a value is not a number"


def _number_rows(path: Path, bodies: list[str], what: str, ncols: int,
                 positions: list[int] | None = None) -> np.ndarray:
    """Like ``_floats``, but every column where all lines have as many; at least ``ncols``.
    ``positions``: each body's line index in the file, to name a bad one."""
    if not bodies:
        return np.zeros((0, ncols))
    try:
        counts = np.fromiter((len(b.split()) for b in bodies), np.int64, len(bodies))
        try:
            flat = _parse_numbers(" ".join(bodies), np.float64)
        except ValueError:
            flat = None
        if flat is None or flat.size != counts.sum():
            raise ValueError(_not_a_number(bodies, positions))
        if counts.min() < ncols:
            raise ValueError(f"fewer than {ncols} numbers on a line")
        if (counts == counts[0]).all():
            return flat.reshape(len(bodies), -1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return flat[starts[:, None] + np.arange(ncols)]
    except ValueError as e:
        raise ScanError(path, f"malformed '{what}' line(s) in OBJ ({e})") from None


def _vertex_colors(columns: np.ndarray) -> np.ndarray | None:
    """(V,3) uint8 from the 4th-6th columns of ``v`` lines (V,C), or None where C < 6 (or
    the values are no colours: negative, or above 255)."""
    if columns.shape[1] < 6 or not len(columns):
        return None
    rgb = columns[:, 3:6]
    if not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 255:
        return None
    scale = 255.0 if rgb.max() <= 1.0 else 1.0
    return np.clip(np.rint(rgb * scale), 0, 255).astype(np.uint8)


def _face_corners(path: Path, bodies: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corner indices of ``f`` lines: (C,) vertex, (C,) uv (0 when absent), (P,) corners/polygon."""
    joined = "\n".join(bodies)
    if "  " in joined:
        joined = re.sub(" +", " ", joined)
        bodies = joined.split("\n")
    counts = np.fromiter((b.count(" ") + 1 for b in bodies), np.int64, len(bodies))
    total = int(counts.sum())
    nslash = bodies[0].split(" ", 1)[0].count("/")
    ndouble = joined.count("//")
    try:
        if joined.count("/") == nslash * total and ndouble in (0, total):
            # One corner form for the whole file (the usual case): parse all at once.
            text = joined.replace("//", "/0/").replace("/", " ").replace("\n", " ")
            flat = _parse_numbers(text, np.int64)
            if flat.size != total * (nslash + 1):
                raise ValueError
            flat = flat.reshape(-1, nslash + 1)
            vi = flat[:, 0]
            ti = flat[:, 1] if nslash >= 1 else np.zeros_like(vi)
            return vi, ti, counts
        # Mixed corner forms: rare, so a per-token path is fine.
        parts = [(tok.split("/") + ["", ""])[:2] for b in bodies for tok in b.split(" ")]
        vi = np.array([p[0] for p in parts], np.int64)
        ti = np.array([p[1] or "0" for p in parts], np.int64)
        return vi, ti, counts
    except ValueError:
        raise ScanError(path, "malformed 'f' line(s) in OBJ (non-integer index)") from None


def _resolve(
    path: Path, idx: np.ndarray, defined_at: list[int], corner_line: np.ndarray, what: str
) -> np.ndarray:
    """OBJ 1-based / negative corner indices -> 0-based, checked against what the file defines.

    Args:
        idx: (C,) raw indices of one kind (vertex or texture coordinate) per face corner.
        defined_at: line number of each definition of that kind, in file order.
        corner_line: (C,) line number of each corner's face (negative indices count back from
            the last definition before that line).
        what: the kind's name for the error message.
    """
    positions = np.asarray(defined_at, np.int64)
    before = np.searchsorted(positions, corner_line)
    out = np.where(idx < 0, before + idx, idx - 1)
    bad = (out < 0) | (out >= len(positions))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ScanError(
            path,
            f"line {corner_line[k] + 1}: face refers to {what} {out[k] + 1} "
            f"but the file has {len(positions)}",
        )
    return out


def _fan(counts: np.ndarray) -> np.ndarray:
    """(F,3) corner positions of a fan triangulation of polygons with ``counts`` corners."""
    ntri = np.maximum(counts - 2, 0)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    first = np.repeat(start, ntri)
    tri_start = np.concatenate([[0], np.cumsum(ntri)[:-1]])
    j = np.arange(ntri.sum()) - np.repeat(tri_start, ntri) + 1
    return np.stack([first, first + j, first + j + 1], axis=1)


_CONTINUED = re.compile(r"\\ *\r?$", re.MULTILINE)


def _joined_continuations(lines: list[str]) -> list[str]:
    """``lines`` with each line that ends in a backslash joined to the next (the OBJ spec's
    continuation), the lines it took left empty so that errors still name the file's own line
    numbers."""
    out: list[str] = []
    pending: list[str] = []
    for line in lines:
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        if pending:
            out.append(" ".join([*pending, line]))
            out.extend([""] * len(pending))
            pending = []
        else:
            out.append(line)
    if pending:
        out.append(" ".join(pending))
        out.extend([""] * (len(pending) - 1))
    return out


def read_obj(path: str | Path) -> ObjData:
    """Read an OBJ file. Raises ScanError for unreadable or malformed content.

    Index range is checked here; NaN/empty checks belong to the caller (``load_scan``).
    """
    path = Path(path)
    text = read_text(path, "file")
    text = text.replace("\t", " ")
    lines = text.splitlines()
    if _CONTINUED.search(text):
        lines = _joined_continuations(lines)
    if "\n " in text or "\r " in text or text.startswith(" "):
        lines = [line.lstrip() for line in lines]

    _check_not_cut(path, text, lines)

    v_pos, v_body, vt_pos, vt_body, f_pos, f_body = [], [], [], [], [], []
    mtl_pos, mtl_names, mtllibs = [], [], []
    for i, line in enumerate(lines):
        c = line[:2]
        if c in ("v ", "f ", "vt") and "#" in line:
            line = line.split("#", 1)[0]  # a comment after the numbers
        if c == "v ":
            v_pos.append(i)
            v_body.append(line[2:].strip())
        elif c == "f ":
            f_pos.append(i)
            f_body.append(line[2:].strip())
        elif c == "vt":
            if line[2:3] == " ":
                vt_pos.append(i)
                vt_body.append(line[3:].strip())
        elif line.startswith("usemtl"):
            mtl_pos.append(i)
            mtl_names.append(line[6:].strip())
        elif line.startswith("mtllib"):
            mtllibs.append(line[6:].strip())

    v_columns = _number_rows(path, v_body, "v", 3, v_pos)
    vertices = v_columns[:, :3]
    colors = _vertex_colors(v_columns)
    uv = _floats(path, vt_body, "vt", 2, vt_pos) if vt_body else None

    if not f_body:
        faces = np.zeros((0, 3), np.int64)
        return ObjData(vertices, faces, uv, None, np.zeros(0, np.int64), [], mtllibs, colors)

    vi, ti, counts = _face_corners(path, f_body)
    if (counts < 3).any():
        bad = int(np.flatnonzero(counts < 3)[0])
        raise ScanError(path, f"line {f_pos[bad] + 1}: a face needs at least 3 corners")
    corner_line = np.repeat(np.asarray(f_pos), counts)
    vi = _resolve(path, vi, v_pos, corner_line, "vertex")
    fan = _fan(counts)
    faces = vi[fan]

    uv_faces = None
    untextured = 0
    has_t = ti != 0
    if uv is not None and has_t.any():
        # Parts exported without texture coordinates (eyeballs, a stand) beside a textured
        # head take one placeholder coordinate, appended to the file's.
        resolved = np.full(len(ti), len(uv), np.int64)
        resolved[has_t] = _resolve(path, ti[has_t], vt_pos, corner_line[has_t],
                                   "texture coordinate")
        if not has_t.all():
            uv = np.concatenate([uv, np.zeros((1, 2))])
            untextured = int((~has_t[fan]).any(axis=1).sum())
        uv_faces = resolved[fan]

    # Material per polygon: the last 'usemtl' before its line, then per triangle.
    materials: list[str] = []
    mat_index = []
    for name in mtl_names:
        if name not in materials:
            materials.append(name)
        mat_index.append(materials.index(name))
    k = np.searchsorted(np.asarray(mtl_pos, np.int64), np.asarray(f_pos)) - 1
    poly_mat = np.where(k >= 0, np.asarray(mat_index + [-1], np.int64)[k], -1)
    face_material = np.repeat(poly_mat, np.maximum(counts - 2, 0))
    return ObjData(vertices, faces, uv, uv_faces, face_material, materials, mtllibs, colors,
                   untextured)


# The options of the MTL spec's map_* statements, so that the file name after them is found
# even when it contains spaces: those taking one word (on/off, a channel, a map type), and
# those taking up to so many numbers (-o/-s/-t take 1 to 3).
_MAP_WORD_OPTIONS = {"-blendu", "-blendv", "-cc", "-clamp", "-imfchan", "-type"}
_MAP_NUMBER_OPTIONS = {"-bm": 1, "-boost": 1, "-texres": 1, "-mm": 2, "-o": 3, "-s": 3, "-t": 3}


def _map_filename(rest: str) -> str:
    tokens = rest.split(" ")
    words = [i for i, t in enumerate(tokens) if t]  # runs of spaces leave empty tokens
    k = 0
    while k < len(words):
        option = tokens[words[k]]
        if option in _MAP_WORD_OPTIONS:
            k += 2
        elif option in _MAP_NUMBER_OPTIONS:
            k += 1
            for _ in range(_MAP_NUMBER_OPTIONS[option]):
                if k < len(words) and _is_number(tokens[words[k]]):
                    k += 1
        else:
            break
    # The name as written from its first word on: spaces inside it are kept.
    return " ".join(tokens[words[k]:]).strip() if k < len(words) else ""


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_mtl(path: str | Path) -> dict[str, str | None]:
    """Material name -> diffuse texture file name as written (``map_Kd``), or None."""
    path = Path(path)
    text = read_text(path, "material file")
    out: dict[str, str | None] = {}
    current: str | None = None
    for raw in text.replace("\t", " ").splitlines():
        keyword, _, rest = raw.strip().partition(" ")
        # Keywords are case-sensitive in the spec; some exporters write map_kd all the same.
        if keyword == "newmtl":
            current = rest.strip()
            out[current] = None
        elif keyword.lower() == "map_kd" and current is not None:
            out[current] = _map_filename(rest.strip()).replace("\\", "/")
    return out


def _rows(prefix: str, arr: np.ndarray, fmt: str) -> str:
    if len(arr) == 0:
        return ""
    line = prefix + " " + " ".join([fmt] * arr.shape[1]) + "\n"
    return (line * len(arr)) % tuple(arr.ravel().tolist())


def _faces_text(corners: np.ndarray, corner_fmt: str) -> str:
    """``f`` lines for corners (F,3,k) of 1-based indices, each corner as ``corner_fmt``."""
    line = "f " + " ".join([corner_fmt] * 3) + "\n"
    return (line * len(corners)) % tuple(corners.ravel().tolist())


def write_obj(
    path: str | Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    uv: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    material: str | None = None,
) -> Path:
    """Write a mesh as OBJ; with ``texture`` also ``<stem>.mtl`` and ``<stem>.png`` beside it.

    Args:
        vertices: (V,3); faces: (F,3) 0-based.
        uv: (T,2) OBJ convention (v up); uv_faces: (F,3) into ``uv`` (defaults to ``faces``
            when ``uv`` has one row per vertex).
        texture: (H,W,3) uint8, row 0 = top of the image.
        normals: (V,3) per-vertex normals.
        material: instead of ``texture``, the name of a material library already beside
            ``path`` (``<name>.mtl``, written with another OBJ of the same UVs) to use, so
            two meshes share one texture image.

    Every file is written to a temporary name and renamed, the OBJ last, so an interrupted
    write never leaves a half-written result. Returns the OBJ path.
    """
    from PIL import Image

    path = Path(path)
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"write_obj needs vertices (V,3), faces (F,3); got {v.shape}, {f.shape}")
    if uv is not None and uv_faces is None:
        if len(uv) != len(v):
            raise ValueError("uv_faces is needed when uv is not per-vertex")
        uv_faces = f
    if (texture is not None or material is not None) and uv is None:
        raise ValueError("a texture needs uv")
    if texture is not None and material is not None:
        raise ValueError("write_obj takes a texture or a material library, not both")
    path.parent.mkdir(parents=True, exist_ok=True)

    header = "# written by ReFLAME Studio\n"
    if texture is not None:
        tex = np.ascontiguousarray(np.asarray(texture, np.uint8)[..., :3])
        png_name, mtl_name = f"{path.stem}.png", f"{path.stem}.mtl"
        # zlib level 1: a third of the default's time for a 1024² texture, and about as small.
        atomic_write(path.parent / png_name,
                     lambda p: Image.fromarray(tex).save(p, format="PNG", compress_level=1))
        mtl = (
            f"newmtl {path.stem}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
            f"map_Kd {png_name}\n"
        )
        atomic_write(path.parent / mtl_name, lambda p: p.write_text(mtl, encoding="utf-8"))
        header += f"mtllib {mtl_name}\n"
        material = path.stem
    elif material is not None:
        header += f"mtllib {material}.mtl\n"

    parts = [header, _rows("v", v, "%.8g")]
    if uv is not None:
        parts.append(_rows("vt", np.asarray(uv, np.float64), "%.8g"))
    if normals is not None:
        parts.append(_rows("vn", np.asarray(normals, np.float64), "%.6g"))
    if material is not None:
        parts.append(f"usemtl {material}\n")
    one = f + 1
    if uv is not None and normals is not None:
        corners = np.stack([one, np.asarray(uv_faces) + 1, one], axis=2)
        parts.append(_faces_text(corners, "%d/%d/%d"))
    elif uv is not None:
        parts.append(_faces_text(np.stack([one, np.asarray(uv_faces) + 1], axis=2), "%d/%d"))
    elif normals is not None:
        parts.append(_faces_text(np.stack([one, one], axis=2), "%d//%d"))
    else:
        parts.append(_faces_text(one[:, :, None], "%d"))
    text = "".join(parts)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path
