"""Exceptions the product raises for bad inputs; each message names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class ReflameError(Exception):
    """Base of every error meant to be shown to the user as it is."""


class InputFileError(ReflameError, ValueError):
    """A user-supplied file is missing, unreadable or malformed."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class ScanError(InputFileError):
    """A scan file cannot be used (missing, no faces, NaN vertices, missing texture, ...)."""


class AssetError(ReflameError):
    """FLAME assets are missing or malformed; the message says what to get and where."""


class OutputPathError(InputFileError):
    """An output path cannot be written (it is a file where a folder is needed, its parent is
    a file, it is not writable, ...); raised before any long computation starts."""


class ConfigError(ReflameError, ValueError):
    """A setting is unknown, of the wrong type or out of range; names the key and value."""

    def __str__(self) -> str:  # KeyError-style quoting would garble the one-line message
        return str(self.args[0]) if self.args else ""


class UnknownSettingError(ConfigError, KeyError):
    """A setting name that ``resources/default.toml`` does not have."""
