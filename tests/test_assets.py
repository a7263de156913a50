"""FLAME template / landmark embedding loaders and the FLAME folder lookup."""

from __future__ import annotations

import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from reflame_core.assets.flame import (
    FLAME_NUM_FACES,
    FLAME_NUM_VERTICES,
    load_flame_template,
    load_landmark_embedding,
)
from reflame_core.assets.locate import (
    ENV_VAR,
    config_path,
    find_flame_dir,
    flame_assets_status,
    save_flame_dir,
)
from reflame_core.errors import AssetError
from reflame_core.io.obj import read_obj


def test_npz_template(flame_dir: Path) -> None:
    t = load_flame_template(flame_dir)  # folder: npz has priority
    assert t.vertices.shape == (FLAME_NUM_VERTICES, 3) and t.vertices.dtype == np.float32
    assert t.faces.shape == (FLAME_NUM_FACES, 3) and t.uv_faces.shape == (FLAME_NUM_FACES, 3)
    assert t.uv.shape == (5150, 2)
    extent = t.vertices.max(0) - t.vertices.min(0)
    assert 3.1 < extent[1] < 3.3


def test_obj_template_maps_to_npz_frame(flame_dir: Path) -> None:
    npz = load_flame_template(flame_dir / "flame_template.npz")
    obj = load_flame_template(flame_dir / "head_template.obj")
    assert obj.vertices.shape == (FLAME_NUM_VERTICES, 3) and obj.uv.shape == (5118, 2)
    np.testing.assert_array_equal(obj.faces, npz.faces)
    # The OBJ is FLAME 2020 geometry, the npz FLAME 2023: after the metre->canonical
    # constant they agree up to that shape difference (a wrong mapping would be off by >1).
    d = np.linalg.norm(obj.vertices - npz.vertices, axis=1)
    assert np.sqrt((d**2).mean()) < 0.05 and d.max() < 0.15
    # DECA's OBJ carries the FLAME 2020 UV layout (one tile); the npz the 2023 one (3 tiles).
    assert obj.uv.min() >= 0 and obj.uv.max() <= 1 and npz.uv.max() > 2


def _fake_chumpy_pickle(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    """A FLAME-style pkl whose v_template is a chumpy object, written without chumpy."""
    mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __reduce__(self):
            return (Ch, (), {"x": self.x, "_dirty_vars": set()})

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch = Ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = types.ModuleType("chumpy"), mod
    try:
        ch = Ch()
        ch.x = v
        with open(path, "wb") as fh:
            pickle.dump({"v_template": ch, "f": f.astype(np.uint32), "shapedirs": ch}, fh, 2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_pkl_template_with_chumpy_objects(flame_dir: Path, tmp_path: Path) -> None:
    d = read_obj(flame_dir / "head_template.obj")
    _fake_chumpy_pickle(tmp_path / "generic_model.pkl", d.vertices, d.faces)
    with pytest.raises(AssetError, match="head_template.obj"):
        load_flame_template(tmp_path / "generic_model.pkl")  # UVs missing
    shutil.copy(flame_dir / "head_template.obj", tmp_path)
    t = load_flame_template(tmp_path)  # folder: pkl + obj
    ref = load_flame_template(flame_dir / "head_template.obj")
    np.testing.assert_allclose(t.vertices, ref.vertices, atol=1e-5)
    np.testing.assert_array_equal(t.uv_faces, ref.uv_faces)


def test_bad_template_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "flame_template.npz", vertices=np.zeros((10, 3)), faces=np.zeros((4, 3)),
             uv=np.zeros((3, 2)), uv_faces=np.zeros((4, 3)))
    with pytest.raises(AssetError, match=r"flame_template.npz: not a FLAME template.*\(10, 3\)"):
        load_flame_template(tmp_path)
    np.savez(tmp_path / "x.npz", vertices=np.zeros((10, 3)))
    with pytest.raises(AssetError, match="x.npz: missing faces, uv, uv_faces"):
        load_flame_template(tmp_path / "x.npz")
    (tmp_path / "flame2023.pkl").write_bytes(b"garbage")
    (tmp_path / "head_template.obj").write_text("v 0 0 0\n")
    with pytest.raises(AssetError, match="flame2023.pkl: cannot read FLAME model"):
        load_flame_template(tmp_path / "flame2023.pkl")
    with pytest.raises(AssetError, match="not found"):
        load_flame_template(tmp_path / "nothing.npz")
    with pytest.raises(AssetError, match="no FLAME template found"):
        load_flame_template(tmp_path / "sub" if (tmp_path / "sub").mkdir() is None else tmp_path)


def test_landmark_embedding(flame_dir: Path, tmp_path: Path) -> None:
    emb = load_landmark_embedding(flame_dir)
    assert emb.face_idx.shape == (68,) and emb.bary.shape == (68, 3)
    t = load_flame_template(flame_dir)
    pts = emb.points(t.vertices, t.faces)
    # iBUG 30 is the nose tip: the most frontal (+z) landmark on the template.
    assert int(np.argmax(pts[:, 2])) == 30
    np.save(tmp_path / "landmark_embedding.npy", np.array({"full_lmk_faces_idx": np.zeros((1, 5))}))
    with pytest.raises(AssetError, match="landmark_embedding.npy: missing entry"):
        load_landmark_embedding(tmp_path)
    with pytest.raises(AssetError, match="not found"):
        load_landmark_embedding(tmp_path / "none")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_find_flame_dir_priority(clean_env: Path, flame_dir: Path, monkeypatch) -> None:
    with pytest.raises(AssetError) as e:
        find_flame_dir()
    msg = str(e.value)
    for needed in ("flame_template.npz", "flame2023.pkl", "head_template.obj",
                   "landmark_embedding.npy", "flame.is.tue.mpg.de", "DECA", "--flame-dir",
                   ENV_VAR, str(clean_env / "xdg" / "reflame" / "config.toml")):
        assert needed in msg

    partial = clean_env / "partial"
    partial.mkdir()
    shutil.copy(flame_dir / "head_template.obj", partial)
    cfg = save_flame_dir(partial)
    assert cfg == config_path() == clean_env / "xdg" / "reflame" / "config.toml"
    with pytest.raises(AssetError, match=r"(?s)lacks: landmark_embedding.npy.*config.toml"):
        find_flame_dir()  # a configured but incomplete folder is reported, not skipped

    save_flame_dir(flame_dir)
    assert find_flame_dir() == flame_dir.resolve()
    monkeypatch.setenv(ENV_VAR, str(partial))
    with pytest.raises(AssetError, match=ENV_VAR):
        find_flame_dir()  # env beats config
    assert find_flame_dir(flame_dir) == flame_dir  # CLI beats env
    with pytest.raises(AssetError, match="does not exist"):
        find_flame_dir(clean_env / "nope")


def test_config_file_keeps_other_settings(clean_env: Path, flame_dir: Path, monkeypatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    cfg = clean_env / "home" / ".config" / "reflame" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('theme = "dark"\nflame_dir = "/old"\n\n[gui]\nflame_dir = "unrelated"\n')
    assert save_flame_dir(flame_dir) == cfg
    import tomllib

    data = tomllib.loads(cfg.read_text())
    assert data == {"theme": "dark", "flame_dir": str(flame_dir.resolve()),
                    "gui": {"flame_dir": "unrelated"}}
    assert find_flame_dir() == flame_dir.resolve()


def test_assets_status(flame_dir: Path, tmp_path: Path) -> None:
    status = {s.name: s for s in flame_assets_status(flame_dir)}
    assert status["flame_template.npz"].present and status["landmark_embedding.npy"].present
    assert not status["flame2023.pkl"].present and status["flame2023.pkl"].description
    assert not any(s.present for s in flame_assets_status(tmp_path))
    assert not any(s.present for s in flame_assets_status(None))
