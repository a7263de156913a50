"""What a glTF file says about itself before its meshes are read: the extensions it needs
and how its texture coordinates are stored, so that the loader can refuse what it cannot
read in words a user can act on, and undo what trimesh leaves undone."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from reflame_core.errors import ScanError

# Mesh compressions trimesh cannot decode (Draco only with the DracoPy package).
_COMPRESSIONS = {"KHR_draco_mesh_compression": "Draco", "EXT_meshopt_compression": "meshopt"}
# Texture containers Pillow cannot decode.
_TEXTURE_FORMATS = {"KHR_texture_basisu": "KTX2 / Basis Universal"}
# glTF componentType -> the largest value of a normalized integer of that type.
_NORMALIZED_MAX = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}


def read_gltf_json(path: Path) -> dict:
    """The JSON document of a .gltf file, or of a .glb's first chunk; {} when it cannot be
    read (the loader then says what is wrong with the file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
            if head[:4] == b"glTF":  # only the JSON chunk: a GLB's binary may be gigabytes
                length, kind = struct.unpack("<I4s", head[12:20])
                data = fh.read(length) if kind == b"JSON" else b"{}"
            else:
                data = head + fh.read()
        doc = json.loads(data.decode("utf-8"))
    except (OSError, ValueError, struct.error):
        return {}
    return doc if isinstance(doc, dict) else {}


def _extensions(doc: dict) -> set[str]:
    return {str(e) for e in (doc.get("extensionsUsed") or []) + (doc.get("extensionsRequired")
                                                                   or [])}


def check_readable(doc: dict, path: Path) -> None:
    """ScanError naming the compression when the meshes are compressed in a way this
    installation cannot decode."""
    for ext in sorted(_extensions(doc) & set(_COMPRESSIONS)):
        if ext == "KHR_draco_mesh_compression" and _has_dracopy():
            continue
        raise ScanError(path, f"its meshes are {_COMPRESSIONS[ext]}-compressed ({ext}), which "
                        "cannot be read here: export it again without mesh compression (or "
                        "decompress it, e.g. with gltf-transform)")


def _has_dracopy() -> bool:
    try:
        import DracoPy  # noqa: F401
    except ImportError:
        return False
    return True


def unreadable_texture_note(doc: dict) -> str | None:
    """Why the file's texture images cannot be read (a container Pillow has no decoder
    for), or None."""
    for ext in sorted(_extensions(doc) & set(_TEXTURE_FORMATS)):
        return (f"its textures are {_TEXTURE_FORMATS[ext]} images ({ext}), which cannot be "
                "read here: export them as PNG or JPEG to use them")
    return None


def triangle_fans_note(doc: dict) -> str | None:
    """What is left out when primitives are triangle fans (mode 6), which trimesh skips
    without a word, or None."""
    fans = sum(1 for mesh in doc.get("meshes") or [] for prim in mesh.get("primitives") or []
               if isinstance(prim, dict) and prim.get("mode") == 6)
    if not fans:
        return None
    return (f"{fans} of its mesh parts are triangle fans (glTF mode 6), which are not read: "
            "they are left out (export triangles to keep them)")


def normalized_uv_max(doc: dict, *, unsigned_only: bool = False) -> float | None:
    """The integer scale of the file's TEXCOORD_0 when every primitive stores it as the same
    normalized integer type (KHR_mesh_quantization: 65535 for unsigned shorts); None for
    floats or a mix, and with ``unsigned_only`` for signed types too."""
    accessors = doc.get("accessors") or []
    found: set[float | None] = set()
    for mesh in doc.get("meshes") or []:
        for prim in mesh.get("primitives") or []:
            index = (prim.get("attributes") or {}).get("TEXCOORD_0")
            if not isinstance(index, int) or not 0 <= index < len(accessors):
                continue
            acc = accessors[index]
            found.add(_NORMALIZED_MAX.get(acc.get("componentType"))
                      if acc.get("normalized") else None)
    scale = found.pop() if len(found) == 1 else None
    if unsigned_only and scale in (127.0, 32767.0):
        return None
    return scale


def _transform_matrix(ext: dict) -> np.ndarray:
    """KHR_texture_transform's 3x3 matrix (offset * rotation * scale, glTF UV space)."""
    ox, oy = (ext.get("offset") or [0.0, 0.0])[:2]
    sx, sy = (ext.get("scale") or [1.0, 1.0])[:2]
    r = float(ext.get("rotation") or 0.0)
    c, s = np.cos(r), np.sin(r)
    return (np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]], np.float64)
            @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], np.float64)
            @ np.diag([sx, sy, 1.0]))


def texture_placement(doc: dict) -> tuple[np.ndarray | None, str | None]:
    """How the base-colour texture sits on TEXCOORD_0: (a KHR_texture_transform matrix, 3x3
    in glTF UV space, or None for none; why the texture cannot be placed, or None). A
    texture on another coordinate set, or materials transformed differently, cannot be."""
    matrices = []
    for material in doc.get("materials") or []:
        info = (material.get("pbrMetallicRoughness") or {}).get("baseColorTexture")
        if not isinstance(info, dict):
            continue
        ext = (info.get("extensions") or {}).get("KHR_texture_transform") or {}
        coords = ext.get("texCoord", info.get("texCoord", 0))
        if coords:
            return None, (f"its texture is laid on texture coordinate set {coords}, which "
                          "is not read here")
        matrices.append(_transform_matrix(ext) if ext else np.eye(3))
    if not matrices or all(np.allclose(m, np.eye(3)) for m in matrices):
        return None, None
    if any(not np.allclose(m, matrices[0]) for m in matrices[1:]):
        return None, "its materials move their textures differently (KHR_texture_transform)"
    return matrices[0], None
