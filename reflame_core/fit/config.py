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

from reflame_core.errors import ConfigError, InputFileError, UnknownSettingError
from reflame_core.fit.config_rules import range_problem
from reflame_core.io.atomic import write_text_atomic
from reflame_core.resources import resources_dir

PRESETS = ("default", "seed", "fast")


def _merge(base: dict, over: dict, source: str, prefix: str = "") -> None:
    """Deep-merge ``over`` into ``base`` in place, refusing keys ``base`` lacks and values
    of the wrong type or out of range (ConfigError naming ``source``, the key and value)."""
    for key, value in over.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise UnknownSettingError(f"{source}: unknown setting '{name}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{name}' must be a table, got {value!r}")
            _merge(base[key], value, source, name + ".")
            continue
        coerced = _coerce(base[key], value, f"{source}: '{name}'")
        problem = range_problem(name, coerced)
        if problem:
            raise ConfigError(f"{source}: '{name}' {problem}, got {value!r}")
        base[key] = coerced


def _coerce(old: Any, new: Any, where: str) -> Any:
    """``new`` as the type of the default ``old`` (bool, int, float, list, str)."""
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise ConfigError(f"{where} must be true or false, got {new!r}")
        return new
    if isinstance(old, int):
        if isinstance(new, float) and new.is_integer():
            return int(new)
        if isinstance(new, bool) or not isinstance(new, int):
            raise ConfigError(f"{where} must be a whole number, got {new!r}")
        return new
    if isinstance(old, float):
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            raise ConfigError(f"{where} must be a number, got {new!r}")
        return float(new)
    if isinstance(old, list):
        if not isinstance(new, list):
            raise ConfigError(f"{where} must be a list, got {new!r}")
        return list(new)
    if isinstance(old, str) and not isinstance(new, str):
        raise ConfigError(f"{where} must be a string, got {new!r}")
    return new


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputFileError(path, "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(path, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not valid TOML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read config file ({exc.strerror or exc})") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``"stages.coarse.lr=0.01"`` -> ``("stages.coarse.lr", 0.01)`` (value parsed as TOML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set '{text}' must look like section.key=value")
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
            raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
        res = resources_dir()
        cfg = cls(_read_toml(res / "default.toml"), ["default"])
        if preset != "default":
            cfg.update(_read_toml(res / f"preset_{preset}.toml"), f"preset '{preset}'")
        if path is not None:
            path = Path(path)
            try:
                cfg.update(_read_toml(path), str(path))
            except ConfigError as exc:
                raise InputFileError(path, str(exc).split(": ", 1)[-1]) from None
        return cfg.with_overrides(overrides)

    def with_overrides(self, overrides: list[str] | dict[str, Any] | None) -> FitConfig:
        """A copy with ``overrides`` (``"key=value"`` strings or a dict) set, checked."""
        cfg = self.copy()
        items = (
            overrides.items()
            if isinstance(overrides, dict)
            else map(parse_override, overrides or [])
        )
        for key, value in items:
            cfg.set(key, value, "--set")
        up, front = cfg.get("frame.up"), cfg.get("frame.front")
        if up[1] == front[1]:
            raise ConfigError(f"frame: up {up} and front {front} must be different axes")
        return cfg

    @classmethod
    def preset(cls, name: str = "default") -> FitConfig:
        """The shipped defaults with preset ``name`` ("default", "seed", "fast") over them,
        as ``reflame fit --preset NAME`` uses."""
        return cls.load(preset=name)

    def update(self, table: dict, source: str) -> None:
        _merge(self.data, table, source)
        self.sources.append(source)

    def set(self, dotted: str, value: Any, source: str = "setting") -> None:
        """Set one value by dotted name (``"stages.refine.lr"``), type- and range-checked."""
        *parents, leaf = dotted.split(".")
        table: dict = {leaf: value}
        for name in reversed(parents):
            table = {name: table}
        _merge(self.data, table, source)

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
        write_text_atomic(path, self.to_toml())
