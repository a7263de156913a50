"""Editing one typed parameter from a text field: parse the text to the type it already has."""

from __future__ import annotations

import tomllib
from typing import Any


def format_value(value: Any) -> str:
    """How a parameter value is shown in an editable text field (TOML literal syntax)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return repr(value)


def parse_like(text: str, current: Any) -> Any:
    """Parse ``text`` as a value of the same type as ``current``.

    Raises ValueError naming the expected type, so a typo never reaches the engine.
    """
    raw = text.strip()
    if isinstance(current, str):
        return raw
    if isinstance(current, bool):
        low = raw.lower()
        if low in ("true", "on", "yes", "1"):
            return True
        if low in ("false", "off", "no", "0"):
            return False
        raise ValueError(f"'{text}' must be true or false")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        raise ValueError(f"'{text}' is not a valid {type(current).__name__}") from None
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"'{text}' must be a whole number")
        return int(value)
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"'{text}' must be a number")
        return float(value)
    if isinstance(current, list) and not isinstance(value, list):
        raise ValueError(f"'{text}' must be a list like [1.0, 2.0]")
    return value
