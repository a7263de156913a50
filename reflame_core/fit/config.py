"""Fitting configuration: one TOML file, presets layered over the shipped defaults.

Every key that may be set is in ``resources/default.toml``; presets and user files may only
override those keys, so a typo is reported instead of silently ignored.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from reflame_core.errors import InputFileError
from reflame_core.resources import resources_dir

PRESETS = ("default", "seed", "fast")


def _merge(base: dict, over: dict, source: str, prefix: str = "") -> None:
    """Deep-merge ``over`` into ``base`` in place, refusing keys ``base`` lacks."""
    for key, value in over.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise KeyError(f"{source}: unknown setting '{name}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise TypeError(f"{source}: '{name}' must be a table")
            _merge(base[key], value, source, name + ".")
        else:
            base[key] = _coerce(base[key], value, f"{source}: '{name}'")


def _coerce(old: Any, new: Any, where: str) -> Any:
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise TypeError(f"{where} must be true or false, got {new!r}")
        return new
    if isinstance(old, (int, float)):
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            raise TypeError(f"{where} must be a number, got {new!r}")
        return type(old)(new) if isinstance(old, float) or float(new).is_integer() else new
    if isinstance(old, list):
        if not isinstance(new, list):
            raise TypeError(f"{where} must be a list, got {new!r}")
        return list(new)
    if isinstance(old, str) and not isinstance(new, str):
        raise TypeError(f"{where} must be a string, got {new!r}")
    return new


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputFileError(path, "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(path, f"not valid TOML: {exc}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``"stages.coarse.lr=0.01"`` -> ``("stages.coarse.lr", 0.01)`` (value parsed as TOML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override '{text}' must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words are strings: up=-z
    return key.strip(), value


@dataclass
class FitConfig:
    """The full, validated configuration as nested dicts (``data``), plus where it came from."""

    data: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        preset: str = "default",
        overrides: list[str] | dict[str, Any] | None = None,
    ) -> FitConfig:
        """Defaults, then the preset, then the user's file, then ``overrides``."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
        res = resources_dir()
        cfg = cls(_read_toml(res / "default.toml"), ["default"])
        if preset != "default":
            cfg.update(_read_toml(res / f"preset_{preset}.toml"), f"preset '{preset}'")
        if path is not None:
            path = Path(path)
            try:
                cfg.update(_read_toml(path), str(path))
            except (KeyError, TypeError) as exc:
                raise InputFileError(path, str(exc).split(": ", 1)[-1]) from None
        items = (
            overrides.items()
            if isinstance(overrides, dict)
            else map(parse_override, overrides or [])
        )
        for key, value in items:
            cfg.set(key, value)
        return cfg

    def update(self, table: dict, source: str) -> None:
        _merge(self.data, table, source)
        self.sources.append(source)

    def set(self, dotted: str, value: Any) -> None:
        """Set one value by dotted name (``"stages.refine.lr"``), type-checked."""
        *parents, leaf = dotted.split(".")
        table: dict = {leaf: value}
        for name in reversed(parents):
            table = {name: table}
        _merge(self.data, table, f"setting '{dotted}'")

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for name in dotted.split("."):
            node = node[name]
        return node

    def stage(self, name: str) -> dict:
        """The parameter table of one stage (a live reference)."""
        return self.data["stages"][name]

    def copy(self) -> FitConfig:
        return FitConfig(copy.deepcopy(self.data), list(self.sources))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml())
