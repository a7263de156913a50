"""Where the user's FLAME files are: CLI flag > $REFLAME_FLAME_DIR > user config file.

The product never ships FLAME (its license forbids redistribution); each user downloads it
once and points the product at the folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from reflame_core.assets.flame import EMBEDDING_NPY, MODEL_PKLS, TEMPLATE_NPZ, TEMPLATE_OBJ
from reflame_core.errors import AssetError

ENV_VAR = "REFLAME_FLAME_DIR"
CONFIG_KEY = "flame_dir"

FLAME_HELP = f"""\
ReFLAME needs the FLAME head model files, which it cannot ship (FLAME license).
Files needed, all in one folder:
  - {TEMPLATE_NPZ}  (FLAME 2023 template, normalized), or FLAME 2023
    {MODEL_PKLS[0]} / {MODEL_PKLS[1]} together with {TEMPLATE_OBJ} (for the UVs)
  - {EMBEDDING_NPY}  (68-landmark embedding)
Where to get them:
  - FLAME: https://flame.is.tue.mpg.de (free registration, then Downloads -> FLAME 2023)
  - {EMBEDDING_NPY} and {TEMPLATE_OBJ}: the data/ folder of the DECA repository
    (https://github.com/yfeng95/DECA)
How to point ReFLAME at the folder (first one set wins):
  - command line: --flame-dir /path/to/flame
  - environment:  {ENV_VAR}=/path/to/flame
  - config file:  {CONFIG_KEY} = "/path/to/flame" in <config>
    (the GUI's first-run panel writes it for you)"""


@dataclass(frozen=True)
class AssetFileStatus:
    """One FLAME file for the GUI's first-run panel."""

    name: str
    present: bool
    description: str


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/reflame/config.toml``, default ``~/.config/reflame/config.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "reflame" / "config.toml"


_KEY_LINE = re.compile(rf"^\s*{CONFIG_KEY}\s*=")


def _read_config_dir(cfg: Path) -> str | None:
    if not cfg.is_file():
        return None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = None
    text = cfg.read_text(encoding="utf-8")
    if tomllib is not None:
        try:
            value = tomllib.loads(text).get(CONFIG_KEY)
        except tomllib.TOMLDecodeError as e:
            raise AssetError(f"{cfg}: not valid TOML ({e})") from None
        return str(value) if value else None
    for line in text.splitlines():
        if line.lstrip().startswith("["):
            break
        if _KEY_LINE.match(line):
            return json.loads(line.split("=", 1)[1].strip())
    return None


def save_flame_dir(path: str | Path) -> Path:
    """Remember ``path`` as the FLAME folder in the user config file; returns the file.

    Other settings in the file are kept; the key is written as a top-level TOML string.
    """
    cfg = config_path()
    cfg.parent.mkdir(parents=True, exist_ok=True)
    lines = cfg.read_text(encoding="utf-8").splitlines() if cfg.is_file() else []
    top_end = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    kept = [ln for i, ln in enumerate(lines) if i >= top_end or not _KEY_LINE.match(ln)]
    # A JSON string of a path is a valid TOML basic string.
    new = [f"{CONFIG_KEY} = {json.dumps(str(Path(path).expanduser().resolve()))}", *kept]
    tmp = cfg.with_name(cfg.name + ".tmp")
    tmp.write_text("\n".join(new) + "\n", encoding="utf-8")
    os.replace(tmp, cfg)
    return cfg


def flame_assets_status(directory: str | Path | None) -> list[AssetFileStatus]:
    """Which FLAME files ``directory`` holds, one entry per needed file (None: none present)."""
    d = Path(directory).expanduser() if directory else None

    def has(name: str) -> bool:
        return d is not None and (d / name).is_file()

    pkl = next((n for n in MODEL_PKLS if has(n)), MODEL_PKLS[0])
    return [
        AssetFileStatus(TEMPLATE_NPZ, has(TEMPLATE_NPZ),
                        "FLAME 2023 template in the normalized frame (or the two files below)"),
        AssetFileStatus(pkl, has(pkl), "FLAME 2023 model from flame.is.tue.mpg.de"),
        AssetFileStatus(TEMPLATE_OBJ, has(TEMPLATE_OBJ),
                        "FLAME template with UVs (DECA data/ folder)"),
        AssetFileStatus(EMBEDDING_NPY, has(EMBEDDING_NPY),
                        "68-landmark embedding (DECA data/ folder)"),
    ]


def missing_flame_files(directory: Path) -> list[str]:
    """Names of the files still needed in ``directory`` (empty when it is usable)."""
    present = {s.name for s in flame_assets_status(directory) if s.present}
    missing = []
    if TEMPLATE_NPZ not in present and TEMPLATE_OBJ not in present:
        missing.append(f"{TEMPLATE_NPZ} (or {MODEL_PKLS[0]} + {TEMPLATE_OBJ})")
    if EMBEDDING_NPY not in present:
        missing.append(EMBEDDING_NPY)
    return missing


def find_flame_dir(cli_value: str | Path | None = None) -> Path:
    """The FLAME folder: ``cli_value`` > $REFLAME_FLAME_DIR > ``flame_dir`` in the config file.

    The first source that is set decides; if its folder lacks files, AssetError says which
    and how to fix it (a set but wrong value is never silently skipped).
    """
    cfg = config_path()
    sources = [
        ("--flame-dir", cli_value),
        (ENV_VAR, os.environ.get(ENV_VAR) or None),
        (str(cfg), _read_config_dir(cfg)),
    ]
    for source, value in sources:
        if not value:
            continue
        d = Path(value).expanduser()
        if not d.is_dir():
            raise AssetError(f"FLAME folder {d} (from {source}) does not exist.\n\n" + _help(cfg))
        missing = missing_flame_files(d)
        if missing:
            raise AssetError(
                f"FLAME folder {d} (from {source}) lacks: {', '.join(missing)}.\n\n" + _help(cfg)
            )
        return d
    return _raise_not_configured(cfg)


def _help(cfg: Path) -> str:
    return FLAME_HELP.replace("<config>", str(cfg))


def _raise_not_configured(cfg: Path) -> Path:
    raise AssetError("No FLAME folder configured.\n\n" + _help(cfg))
