"""Load a head scan (OBJ+MTL+texture, PLY, GLB/GLTF) into a validated ``Scan``."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from reflame_core.errors import ScanError
from reflame_core.io.atlas import pack_textures
from reflame_core.io.gltf_header import (
    check_readable,
    normalized_uv_max,
    read_gltf_json,
    texture_placement,
    triangle_fans_note,
    unreadable_texture_note,
)
from reflame_core.io.image import MAX_TEXTURE_PIXELS, allow_large_images, to_rgb8
from reflame_core.io.mesh import Scan
from reflame_core.io.obj import read_mtl, read_obj
from reflame_core.io.scan_cleanup import used_vertices_only, without_far_pieces

SCAN_EXTENSIONS = (".obj", ".ply", ".glb", ".gltf")


def read_texture(path: Path, scan_path: Path) -> np.ndarray:
    """(H,W,3) uint8 RGB, row 0 = top; ScanError naming both files when unreadable."""
    with _texture_file(path, scan_path) as im:
        return to_rgb8(im)


@contextmanager
def _texture_file(path: Path, scan_path: Path):
    """The texture file opened with Pillow; ScanError naming both files when it cannot be."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ScanError(scan_path, f"texture file not found: {path}")
    allow_large_images()
    try:
        with Image.open(path) as im:
            yield im
    except Image.DecompressionBombError:
        raise ScanError(scan_path, f"texture file {path} is larger than "
                        f"{MAX_TEXTURE_PIXELS} pixels (32768²); scale it down") from None
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ScanError(scan_path, f"texture file {path} is not a readable image ({e})") from None


def _find_texture(name: str, mtl_dir: Path, obj_dir: Path) -> Path:
    """Resolve a ``map_Kd`` name: relative to the MTL, else the bare file name beside the OBJ."""
    p = Path(name)
    if p.is_absolute() and p.is_file():
        return p
    for candidate in (mtl_dir / p, obj_dir / p.name, mtl_dir / p.name):
        if candidate.is_file():
            return candidate
    return p if p.is_absolute() else mtl_dir / p


def _image_size(path: Path, scan_path: Path) -> tuple[int, int]:
    """(width, height) of a texture file without decoding it; errors as ``read_texture``."""
    with _texture_file(path, scan_path) as im:
        return im.size


def _library_names(written: str, folder: Path) -> list[str]:
    """The material libraries of one ``mtllib`` line: the spec allows several, separated by
    spaces, and exporters also write one name with spaces in it; whichever is on disk."""
    if " " not in written or (folder / written).is_file():
        return [written]
    return written.split()


def _find_library(written: str, folder: Path) -> Path | None:
    """A material library named on an ``mtllib`` line: relative to the OBJ, else its bare
    file name beside it (an exporter's absolute or Windows path, ``.\\head.mtl``), else the
    one file there whose name differs only in case (a Windows export copied elsewhere)."""
    p = Path(written.replace("\\", "/"))  # as a map_Kd name is read (read_mtl)
    for candidate in (folder / p, folder / p.name):
        if candidate.is_file():
            return candidate
    same = [f for f in folder.iterdir() if f.name.lower() == p.name.lower() and f.is_file()]
    return same[0] if len(same) == 1 else None


def _obj_textures(path: Path, mtllibs: list[str], used: list[str] | None, notes: list[str]
                  ) -> dict[str, Path]:
    """Material name -> diffuse texture file, for the materials the OBJ's faces use (None:
    every material); a material library that is not there is said in ``notes``."""
    textures: dict[str, Path] = {}
    for lib in (name for written in mtllibs for name in _library_names(written, path.parent)):
        mtl_path = _find_library(lib, path.parent)
        if mtl_path is None:
            notes.append(f"material library {lib} not found beside the OBJ: any texture it "
                         "names is not loaded (copy it next to the OBJ to use the texture)")
            continue
        for name, tex in read_mtl(mtl_path).items():
            if (used is None or name in used) and tex:
                textures[name] = _find_texture(tex, mtl_path.parent, path.parent)
    return textures


def _unnamed_material_textures(path: Path, mtllibs: list[str], notes: list[str]
                               ) -> dict[str, Path]:
    """The texture of an OBJ whose faces name no material (no ``usemtl``, as some exporters
    write a single-material mesh): its libraries' one textured material, said in ``notes``;
    with several, none (which one is meant cannot be told), also said."""
    textures = _obj_textures(path, mtllibs, None, notes)
    files = set(textures.values())
    if len(files) == 1:
        notes.append(f"no face names a material (usemtl): the only textured one, "
                     f"{next(iter(textures))}, is used for all")
        return textures
    if files:
        notes.append(f"no face names a material (usemtl) and its libraries have "
                     f"{len(files)} textured ones: loaded untextured (add usemtl lines)")
    return {}


def _packed(loaders: list[Callable[[], np.ndarray]], sizes: list[tuple[int, int]],
            names: list[str], uv: np.ndarray, uv_faces: np.ndarray, face_image: np.ndarray,
            notes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(texture, uv, uv_faces) of several textures packed into one, said in ``notes``."""
    packed = pack_textures(loaders, sizes, uv, uv_faces, face_image)
    h, w = packed.texture.shape[:2]
    notes.append(f"{len(loaders)} textures ({', '.join(names)}) packed into one {w}x{h} "
                 f"texture, {packed.cell_size[0]}x{packed.cell_size[1]} each")
    return packed.texture, packed.uv, packed.uv_faces


def _untextured_note(untextured: int, total: int) -> str:
    return (f"{untextured} of its {total} faces have no texture coordinates (parts exported "
            "without them, such as eyeballs or a stand): they take the colour of the "
            "texture's corner")


def _load_obj(path: Path) -> Scan:
    d = read_obj(path)
    finite = d.vertices[np.isfinite(d.vertices)]
    if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
        raise ScanError(path, "vertex coordinates too large (beyond ±3.4e38); rescale the scan")
    used = [d.materials[i] for i in np.unique(d.face_material) if i >= 0]
    notes: list[str] = []
    if used:
        textures = _obj_textures(path, d.mtllibs, used, notes)
    elif d.mtllibs and d.uv_faces is not None:
        textures = _unnamed_material_textures(path, d.mtllibs, notes)
    else:
        textures = {}
    if d.untextured_faces and textures:
        notes.append(_untextured_note(d.untextured_faces, len(d.faces)))
    files = sorted(set(textures.values()))
    uv = None if d.uv is None or d.uv_faces is None else d.uv.astype(np.float32)
    uv_faces, texture = d.uv_faces, None
    if files and uv is None:
        # A material template an exporter writes whatever the mesh has (v//vn faces): the
        # geometry is still worth fitting, shaded as an untextured scan.
        notes.append(f"its material names a texture ({', '.join(f.name for f in files)}) but "
                     "its faces have no texture coordinates (vt): loaded untextured")
        files = []
    if len(files) == 1:
        texture = read_texture(files[0], path)
    elif files:
        image_of = {m: files.index(t) for m, t in textures.items()}
        by_material = np.array([image_of.get(m, -1) for m in d.materials] + [-1], np.int64)
        face_image = by_material[d.face_material]  # -1 (no usemtl) picks the trailing -1
        texture, uv, uv_faces = _packed(
            [lambda f=f: read_texture(f, path) for f in files],
            [_image_size(f, path) for f in files], [f.name for f in files], uv, uv_faces,
            face_image, notes)
    return Scan(
        vertices=d.vertices.astype(np.float32),
        faces=d.faces,
        uv=uv,
        uv_faces=uv_faces,
        texture=texture,
        vertex_colors=d.vertex_colors,
        path=path,
        notes=notes,
    )


def _weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge exactly coincident positions (undoing a split at UV seams): (V',3), faces (F,3)."""
    welded, inverse = np.unique(vertices, axis=0, return_inverse=True)
    return welded, inverse.reshape(-1)[faces]


def _visual_texture(geom, path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(uv (V,2) OBJ convention, texture image) of a trimesh geometry's texture visual."""
    visual = geom.visual
    if getattr(visual, "kind", None) != "texture" or visual.uv is None:
        return None, None
    material = visual.material
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    texture = None
    if image is not None:
        try:
            texture = to_rgb8(image)
        except (OSError, ValueError) as e:
            raise ScanError(path, f"embedded texture cannot be decoded ({e})") from None
    if texture is not None and texture.shape[0] * texture.shape[1] <= 4 and (
            texture == texture[0, 0]).all():
        # trimesh's stand-in (a 2x2 image of one colour) where UVs came without an image:
        # rendered with it, the face would be one flat colour, not shaded.
        texture = None
    return np.asarray(visual.uv, np.float64), texture


def _digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest() + bytes(str(image.shape),
                                                                              "ascii")


@contextmanager
def _quiet(logger: str):
    """Messages of ``logger`` below ERROR silenced for the block (the loader says what
    matters in the scan's notes or its error)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _texture_file_named_in(path: Path, doc: dict) -> str | None:
    """The one texture file a PLY (its ``comment TextureFile`` header line) or a glTF (its
    one external image, URI-decoded) names, or None."""
    if path.suffix.lower() == ".ply":
        header = _ply_header(path)
        for line in (header or b"").decode("latin-1").splitlines():
            words = line.split(None, 2)
            if len(words) == 3 and words[0] == "comment" and words[1].lower() == "texturefile":
                return words[2].strip()
        return None
    images = doc.get("images") or []
    uri = images[0].get("uri") if len(images) == 1 and isinstance(images[0], dict) else None
    if not isinstance(uri, str) or uri.startswith("data:"):
        return None
    return unquote(uri)


def _ply_header(path: Path) -> bytes | None:
    """A PLY's header, up to ``end_header``; None where the file cannot be read or has none
    in its first 64 KiB (trimesh then says what is wrong)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return None
    end = head.find(b"end_header")
    return head[:end] if end >= 0 else None


def _trimesh_source(path: Path) -> tuple:
    """Arguments for ``trimesh.load``: the file's name, or, for a PLY whose header is not
    UTF-8 (a comment in Latin-1, as Windows scanner software writes names), its bytes with
    the header re-encoded, which trimesh's parser would otherwise refuse."""
    header = _ply_header(path) if path.suffix.lower() == ".ply" else None
    try:
        (header or b"").decode("utf-8")
        return (str(path),)
    except UnicodeDecodeError:
        data = path.read_bytes()
        return (io.BytesIO(header.decode("latin-1").encode("utf-8") + data[len(header):]),
                "ply")


def _normalized(uv: np.ndarray, doc: dict) -> np.ndarray:
    """glTF texture coordinates (V,2), OBJ convention, with unsigned integers that the file
    stores normalized (KHR_mesh_quantization) brought to 0-1, where trimesh left them raw:
    its v flip, 1 - v, then wrapped around in the integer type."""
    scale = normalized_uv_max(doc, unsigned_only=True)
    if scale is None or np.abs(uv).max() <= 1.5:  # floats, or already normalized
        return uv
    raw_v = np.mod(1.0 - uv[:, 1], scale + 1.0)
    return np.c_[uv[:, 0] / scale, 1.0 - raw_v / scale]


def _load_trimesh(path: Path) -> Scan:
    """PLY / GLB / GLTF through trimesh; glTF UVs arrive in OBJ convention (trimesh flips v)."""
    import trimesh

    allow_large_images()  # embedded textures decode through Pillow
    is_gltf = path.suffix.lower() in (".glb", ".gltf")
    doc = read_gltf_json(path) if is_gltf else {}
    check_readable(doc, path)
    try:
        with _quiet("trimesh"):  # a texture it cannot open is logged with a traceback
            loaded = trimesh.load(*_trimesh_source(path), process=False, maintain_order=True)
    except Exception as e:  # trimesh raises many types for corrupt files
        raise ScanError(path, f"cannot parse file ({type(e).__name__}: {e})") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        geoms = [loaded]
    else:
        geoms = []
    geoms = [g for g in geoms if len(g.faces)]
    fans = triangle_fans_note(doc)
    if not geoms:
        raise ScanError(path, "the file contains no triangle mesh (no faces)"
                        + (f"; {fans}" if fans else ""))

    verts, faces, uvs, colors, textures = [], [], [], [], []
    offset = face_colored = 0
    for g in geoms:
        v = np.asarray(g.vertices, np.float64)
        f = np.asarray(g.faces, np.int64)
        uv, tex = _visual_texture(g, path)
        verts.append(v)
        faces.append(f + offset)
        uvs.append(uv)
        textures.append(tex)
        vc = None
        kind = getattr(g.visual, "kind", None)
        if kind in ("vertex", "face"):
            # trimesh averages per-face colours at the vertices: the renders keep the skin's
            # colour, which the detector reads, where the shaded grey would lose it.
            vc = np.asarray(g.visual.vertex_colors)[:, :3].astype(np.uint8)
            face_colored += int(kind == "face")
        colors.append(vc)
        offset += len(v)
    with_tex = [i for i, t in enumerate(textures) if t is not None]
    notes: list[str] = [fans] if fans else []
    split_v = np.concatenate(verts)
    split_f = np.concatenate(faces)
    uv = uv_faces = texture = vertex_colors = None
    if with_tex and not all(u is not None for u in uvs):
        # As in an OBJ: parts without texture coordinates beside textured ones take (0, 0).
        untextured = sum(len(f) for f, u in zip(faces, uvs, strict=True) if u is None)
        uvs = [np.zeros((len(v), 2)) if u is None else u
               for v, u in zip(verts, uvs, strict=True)]
        notes.append(_untextured_note(untextured, sum(len(f) for f in faces)))
    if all(u is not None for u in uvs):
        uv = _normalized(np.concatenate(uvs), doc)
        uv_faces = split_f
        texture = textures[with_tex[0]] if with_tex else None
        matrix, unplaced = texture_placement(doc)
        if unplaced and texture is not None:
            # A texture laid on the wrong coordinates shows the detector no face.
            notes.append(f"{unplaced}: loaded untextured")
            texture, with_tex = None, []
        elif matrix is not None:
            gl = np.c_[uv[:, 0], 1.0 - uv[:, 1], np.ones(len(uv))] @ matrix.T
            uv = np.c_[gl[:, 0], 1.0 - gl[:, 1]]
        uv = uv.astype(np.float32)
        named = _texture_file_named_in(path, doc) if texture is None and not unplaced else None
        if named is not None:
            found = _find_texture(named.replace("\\", "/"), path.parent, path.parent)
            if found.is_file():  # trimesh could not resolve it (a Windows path, %20)
                texture = read_texture(found, path)
            else:
                notes.append(f"texture file {named} not found beside the scan: it is "
                             "rendered shaded, as an untextured scan")
        elif texture is None and not unplaced:
            notes.append(unreadable_texture_note(doc) or "the file has texture coordinates "
                         "but no texture image: it is rendered shaded, as an untextured scan")
        # Primitives that share one material each carry a copy of its image: one cell each.
        distinct: dict[bytes, int] = {}
        image_of = {g: distinct.setdefault(_digest(textures[g]), g)
                    for g in (with_tex if len(with_tex) > 1 else [])}
        if len(distinct) > 1:
            cells = list(distinct.values())
            face_image = np.concatenate([
                np.full(len(f), cells.index(image_of[g]) if g in image_of else -1, np.int64)
                for g, f in enumerate(faces)])
            names = [str(getattr(geoms[g].visual.material, "name", None) or f"mesh {g}")
                     for g in cells]
            texture, uv, uv_faces = _packed(
                [lambda t=textures[g]: t for g in cells],
                [(textures[g].shape[1], textures[g].shape[0]) for g in cells], names,
                uv, uv_faces, face_image, notes)
    if all(c is not None for c in colors):
        vertex_colors = np.concatenate(colors)
        if face_colored:
            notes.append("its colours are given per face: averaged at the vertices")
    if is_gltf or uv is not None:
        vertices, faces_w = _weld(split_v, split_f)
        if vertex_colors is not None:
            wc = np.zeros((len(vertices), 3), np.uint8)
            wc[faces_w.ravel()] = vertex_colors[split_f.ravel()]
            vertex_colors = wc
    else:
        vertices, faces_w = split_v, split_f
    return Scan(
        vertices=vertices.astype(np.float32),
        faces=faces_w,
        uv=uv,
        uv_faces=uv_faces,
        texture=texture,
        vertex_colors=vertex_colors,
        path=path,
        units="m" if is_gltf else "unknown",  # glTF 2.0 specifies metres
        notes=notes,
    )


def validate_scan(scan: Scan, path: Path, require_texture: bool = False) -> Scan:
    """Raise ScanError naming ``path`` when the scan cannot be used; returns it unchanged."""
    v, f = scan.vertices, scan.faces
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ScanError(path, "empty mesh (no vertices)")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ScanError(path, "the mesh has no faces (a point cloud cannot be fitted)")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ScanError(path, f"{int(bad.sum())} vertices are NaN/inf (first: {first})")
    if f.min() < 0 or f.max() >= len(v):
        raise ScanError(path, f"face indices out of range (0..{len(v) - 1}): {f.min()}..{f.max()}")
    if scan.uv is not None:
        if scan.uv_faces is None or scan.uv_faces.shape != f.shape:
            raise ScanError(path, "texture coordinates do not match the faces")
        if scan.uv_faces.min() < 0 or scan.uv_faces.max() >= len(scan.uv):
            raise ScanError(path, "texture-coordinate indices out of range")
        if not np.isfinite(scan.uv).all():
            raise ScanError(path, "texture coordinates contain NaN/inf")
    if scan.texture is not None and scan.uv is None:
        raise ScanError(path, "the file has a texture but its faces have no texture coordinates")
    if require_texture and not scan.has_texture:
        what = "no texture coordinates (UVs)" if scan.uv is None else "no texture image"
        raise ScanError(path, f"a textured scan is needed but the file has {what}"
                        + "".join(f"; {n}" for n in scan.notes))
    if float(np.max(v.max(0) - v.min(0))) <= 0:
        raise ScanError(path, "degenerate mesh (all vertices at one point)")
    tri = v[f].astype(np.float64)
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not (area2 > 0).any():
        raise ScanError(path, f"degenerate mesh (all {len(f)} faces have zero area)")
    return scan


def load_scan(path: str | Path, *, require_texture: bool = False) -> Scan:
    """Read a scan file into a ``Scan`` (see its docstring for shapes and conventions).

    OBJ keeps UV seams (``uv`` + ``uv_faces``) and the geometry as written; GLB/GLTF vertices
    that trimesh split at seams are welded back. ``units`` is "m" for glTF (the spec's unit)
    and "unknown" otherwise. Raises ScanError naming the file and the problem.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if path.is_dir():
        raise ScanError(path, "is a folder: give the scan file in it (reflame batch fits a "
                        "folder of scans)")
    if ext not in SCAN_EXTENSIONS:
        known = ", ".join(SCAN_EXTENSIONS)
        raise ScanError(path, f"unsupported file type {ext or '(none)'}; use one of {known}")
    if not path.is_file():
        raise ScanError(path, "file not found" if not path.exists() else "not a file")
    scan = _load_obj(path) if ext == ".obj" else _load_trimesh(path)
    scan = validate_scan(used_vertices_only(scan, path), path, require_texture)
    return wound_outward(without_far_pieces(scan))


def wound_outward(scan: Scan) -> Scan:
    """``scan`` with the parts whose faces are wound inward turned outward (``Scan.faces`` is
    counter-clockwise seen from outside; ``geometry/orientation.py`` says why it matters), and
    a note saying so. Unchanged where nothing is inward."""
    from reflame_core.geometry.orientation import inward_faces

    turned = inward_faces(scan.vertices, scan.faces)
    if not turned.any():
        return scan
    faces = scan.faces.copy()
    faces[turned] = faces[turned][:, ::-1]
    uv_faces = None
    if scan.uv_faces is not None:
        uv_faces = scan.uv_faces.copy()
        uv_faces[turned] = uv_faces[turned][:, ::-1]
    n, total = int(turned.sum()), len(faces)
    if n == total:
        note = ("its faces were wound inward (normals pointing into the head, as a mirrored "
                "export leaves them): turned outward")
    else:
        note = (f"{n} of its {total} faces were wound inward (normals pointing into the "
                "head): turned outward")
    return replace(scan, faces=faces, uv_faces=uv_faces, notes=[*scan.notes, note],
                   _normals=None)
