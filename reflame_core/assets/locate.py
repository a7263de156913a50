"""Where the user's FLAME files are: CLI flag > $REFLAME_FLAME_DIR > user config file.

The product never ships FLAME (its license forbids redistribution); each user downloads it
once and points the product at the folder.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from reflame_core.assets.flame import EMBEDDING_NPY, MODEL_PKLS, TEMPLATE_NPZ, TEMPLATE_OBJ
from reflame_core.errors import AssetError
from reflame_core.io.atomic import write_text_atomic

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


def _read_config_dir(cfg: Path) -> tuple[str | None, str | None]:
    """(``flame_dir`` from the user config file or None, the problem with the file or None).

    A broken file (not UTF-8, not TOML) is a problem to report, never a reason to fail: the
    FLAME folder may well come from elsewhere, and other commands do not need it at all.
    """
    if not cfg.is_file():
        return None, None
    try:
        text = cfg.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, f"{cfg}: not UTF-8 text, ignored"
    except OSError as e:
        return None, f"{cfg}: cannot be read ({e.strerror or e}), ignored"
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = None
    if tomllib is not None:
        try:
            value = tomllib.loads(text).get(CONFIG_KEY)
        except tomllib.TOMLDecodeError as e:
            return None, f"{cfg}: not valid TOML ({e}), ignored"
        if value is not None and not isinstance(value, str):
            return None, f"{cfg}: '{CONFIG_KEY}' must be a string, ignored"
        return (value or None), None
    for line in text.splitlines():
        if line.lstrip().startswith("["):
            break
        if _KEY_LINE.match(line):
            try:
                return json.loads(line.split("=", 1)[1].strip()), None
            except ValueError:
                return None, f"{cfg}: '{CONFIG_KEY}' is not a quoted string, ignored"
    return None, None


def save_flame_dir(path: str | Path) -> Path:
    """Remember ``path`` as the FLAME folder in the user config file; returns the file.

    Other settings in the file are kept; the key is written as a top-level TOML string.
    """
    cfg = config_path()
    cfg.parent.mkdir(parents=True, exist_ok=True)
    # A broken file is rewritten with its undecodable bytes replaced rather than refused.
    lines = cfg.read_text(encoding="utf-8", errors="replace").splitlines() if cfg.is_file() else []
    top_end = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    kept = [ln for i, ln in enumerate(lines) if i >= top_end or not _KEY_LINE.match(ln)]
    # A JSON string of a path is a valid TOML basic string.
    new = [f"{CONFIG_KEY} = {json.dumps(str(Path(path).expanduser().resolve()))}", *kept]
    write_text_atomic(cfg, "\n".join(new) + "\n")
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
    for source, value in (("--flame-dir", cli_value), (ENV_VAR, os.environ.get(ENV_VAR))):
        if value:
            return _checked_dir(Path(value).expanduser(), source, cfg)
    # Read only now: a broken config file matters only when it is the one source left.
    value, problem = _read_config_dir(cfg)
    if problem:
        print(f"reflame: warning: {problem}", file=sys.stderr)
    if value:
        return _checked_dir(Path(value).expanduser(), str(cfg), cfg)
    return _raise_not_configured(cfg, problem)


def _checked_dir(d: Path, source: str, cfg: Path) -> Path:
    if not d.is_dir():
        raise AssetError(f"FLAME folder {d} (from {source}) does not exist.\n\n" + _help(cfg))
    missing = missing_flame_files(d)
    if missing:
        raise AssetError(
            f"FLAME folder {d} (from {source}) lacks: {', '.join(missing)}.\n\n" + _help(cfg)
        )
    return d


def _help(cfg: Path) -> str:
    return FLAME_HELP.replace("<config>", str(cfg))


def _raise_not_configured(cfg: Path, problem: str | None = None) -> Path:
    why = f" ({problem})" if problem else ""
    raise AssetError(f"No FLAME folder configured{why}.\n\n" + _help(cfg))
