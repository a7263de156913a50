"""FLAME topology: the template mesh with its UV layout, and the 68-landmark embedding."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reflame_core.errors import AssetError, ReflameError
from reflame_core.geometry.similarity import Similarity

FLAME_NUM_VERTICES = 5023
FLAME_NUM_FACES = 9976


@dataclass(frozen=True)
class FlameTemplate:
    """The FLAME template in the canonical fitting frame.

    Attributes:
        vertices: (5023,3) float32; canonical frame (+y up, +z towards the face, head inside
            about [-2,2], the frame of FLAME2023's ``flame_template.npz``).
        faces: (9976,3) int64.
        uv: (T,2) float32 FLAME UVs, OBJ convention (v up). Some u exceed 1: FLAME's extra
            UV tiles (eyeballs, mouth interior).
        uv_faces: (9976,3) int64 indices into ``uv``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])


@dataclass(frozen=True)
class LandmarkEmbedding:
    """The 68 iBUG landmarks as points on FLAME faces.

    Attributes:
        face_idx: (68,) int64 FLAME face per landmark.
        bary: (68,3) float32 barycentric coordinates on that face.
    """

    face_idx: np.ndarray
    bary: np.ndarray

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(68,3) landmark positions on a mesh in FLAME topology (vertices (5023,3))."""
        tri = np.asarray(vertices)[np.asarray(faces)[self.face_idx]]  # (68,3,3)
        return np.einsum("lk,lkd->ld", self.bary, tri)


# --- Loaders -------------------------------------------------------------------------------

TEMPLATE_NPZ = "flame_template.npz"
TEMPLATE_OBJ = "head_template.obj"
MODEL_PKLS = ("flame2023.pkl", "generic_model.pkl")
EMBEDDING_NPY = "landmark_embedding.npy"

# FLAME's official files are in metres; the canonical frame is that of flame_template.npz.
# Least-squares scale + translation from head_template.obj (DECA's copy, FLAME 2020 geometry)
# to flame_template.npz (FLAME 2023) on the shared test data: rotation is identity to 0.02 rad,
# residual rms 0.04 / max 0.12 canonical units, because the two templates are different FLAME
# releases, not because of the mapping.
METRES_TO_CANONICAL = Similarity(10.2055, np.eye(3), np.array([-0.0006, -15.3389, -0.1673]))


def _check_template(path: Path, v: np.ndarray, f: np.ndarray, uv: np.ndarray, uvf: np.ndarray):
    problems = []
    if v.shape != (FLAME_NUM_VERTICES, 3):
        problems.append(f"vertices {v.shape}, expected ({FLAME_NUM_VERTICES}, 3)")
    if f.shape != (FLAME_NUM_FACES, 3):
        problems.append(f"faces {f.shape}, expected ({FLAME_NUM_FACES}, 3)")
    if uv.ndim != 2 or uv.shape[1] != 2:
        problems.append(f"uv {uv.shape}, expected (T, 2)")
    if uvf.shape != (FLAME_NUM_FACES, 3):
        problems.append(f"uv_faces {uvf.shape}, expected ({FLAME_NUM_FACES}, 3)")
    if not problems:
        if not np.isfinite(v).all():
            problems.append("vertices contain NaN/inf")
        if f.min() < 0 or f.max() >= len(v) or uvf.min() < 0 or uvf.max() >= len(uv):
            problems.append("face indices out of range")
    if problems:
        raise AssetError(f"{path}: not a FLAME template ({'; '.join(problems)})")
    return FlameTemplate(
        v.astype(np.float32), f.astype(np.int64), uv.astype(np.float32), uvf.astype(np.int64)
    )


class _ChumpyStandIn:
    """Replaces chumpy classes when unpickling FLAME's model files (chumpy is not needed)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["x"] = state

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.__dict__["x"], dtype=dtype)


class _FlameUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "chumpy":
            return _ChumpyStandIn
        return super().find_class(module, name)


def _read_model_pkl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(v_template (5023,3) metres, f (9976,3)) from FLAME's pickled model."""
    try:
        with open(path, "rb") as fh:
            model = _FlameUnpickler(fh, encoding="latin1").load()
        v = np.asarray(model["v_template"], np.float64)
        f = np.asarray(model["f"], np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError,
            AttributeError, ImportError) as e:
        raise AssetError(f"{path}: cannot read FLAME model ({type(e).__name__}: {e})") from None
    return v, f


def _read_template_obj(path: Path):
    from reflame_core.io.obj import read_obj

    try:
        d = read_obj(path)
    except ReflameError as e:
        raise AssetError(str(e)) from None
    if d.uv is None or d.uv_faces is None:
        raise AssetError(f"{path}: the FLAME template OBJ has no texture coordinates")
    return d


def load_flame_template(path_or_dir: str | Path) -> FlameTemplate:
    """The FLAME template in the canonical frame.

    Accepts ``flame_template.npz`` (keys vertices, faces, uv, uv_faces; canonical frame),
    FLAME's ``flame2023.pkl``/``generic_model.pkl`` (UVs from ``head_template.obj`` beside
    it), ``head_template.obj`` (metres), or a folder holding them, tried in that order.
    Raises AssetError naming the file and the problem.
    """
    p = Path(path_or_dir)
    if p.is_dir():
        for name in (TEMPLATE_NPZ, *MODEL_PKLS, TEMPLATE_OBJ):
            if (p / name).is_file() and (name not in MODEL_PKLS or (p / TEMPLATE_OBJ).is_file()):
                return load_flame_template(p / name)
        raise AssetError(
            f"{p}: no FLAME template found (need {TEMPLATE_NPZ}, or {' / '.join(MODEL_PKLS)} "
            f"together with {TEMPLATE_OBJ}, or {TEMPLATE_OBJ})"
        )
    if not p.is_file():
        raise AssetError(f"{p}: FLAME template file not found")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p) as d:
                keys = ("vertices", "faces", "uv", "uv_faces")
                missing = [k for k in keys if k not in d.files]
                if missing:
                    raise AssetError(f"{p}: missing {', '.join(missing)} (need {', '.join(keys)})")
                arrays = [np.asarray(d[k]) for k in keys]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated download
            raise AssetError(f"{p}: cannot read ({type(e).__name__}: {e})") from None
        return _check_template(p, *arrays)
    if suffix == ".obj":
        d = _read_template_obj(p)
        return _check_template(p, METRES_TO_CANONICAL.apply(d.vertices), d.faces, d.uv, d.uv_faces)
    if suffix == ".pkl":
        v, f = _read_model_pkl(p)
        obj = p.parent / TEMPLATE_OBJ
        if not obj.is_file():
            raise AssetError(f"{p}: FLAME UVs come from {TEMPLATE_OBJ}, not found beside it")
        d = _read_template_obj(obj)
        if d.faces.shape != f.shape or (d.faces != f).any():
            raise AssetError(f"{obj}: faces differ from those of {p.name}; not the same FLAME")
        return _check_template(p, METRES_TO_CANONICAL.apply(v), f, d.uv, d.uv_faces)
    raise AssetError(f"{p}: not a FLAME template file (.npz, .pkl or .obj)")


def load_landmark_embedding(path_or_dir: str | Path) -> LandmarkEmbedding:
    """The 68 iBUG landmarks from DECA's ``landmark_embedding.npy`` (file or its folder).

    Uses ``full_lmk_faces_idx`` (1,68) and ``full_lmk_bary_coords`` (1,68,3).
    """
    p = Path(path_or_dir)
    if p.is_dir():
        p = p / EMBEDDING_NPY
    if not p.is_file():
        raise AssetError(f"{p}: landmark embedding file not found")
    try:
        # Some entries are pickled torch tensors; unpickling them needs torch importable.
        d = np.load(p, allow_pickle=True, encoding="latin1")[()]
        face_idx = np.asarray(d["full_lmk_faces_idx"]).reshape(-1).astype(np.int64)
        bary = np.asarray(d["full_lmk_bary_coords"], np.float32).reshape(-1, 3)
    except KeyError as e:
        raise AssetError(f"{p}: missing entry {e} (not DECA's landmark_embedding.npy)") from None
    except (OSError, ValueError, TypeError, IndexError, pickle.UnpicklingError, EOFError) as e:
        raise AssetError(f"{p}: cannot read landmark embedding ({type(e).__name__}: {e})") from None
    if face_idx.shape != (68,) or bary.shape != (68, 3):
        raise AssetError(f"{p}: expected 68 landmarks, got {face_idx.shape}, {bary.shape}")
    if face_idx.min() < 0 or face_idx.max() >= FLAME_NUM_FACES:
        raise AssetError(f"{p}: landmark face indices out of range for FLAME")
    if not np.allclose(bary.sum(1), 1.0, atol=1e-3):
        raise AssetError(f"{p}: barycentric coordinates do not sum to 1")
    return LandmarkEmbedding(face_idx, bary)
