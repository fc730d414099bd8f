"""The effective configuration as TOML that ``tomllib`` (and so ``flujo.toml``) reads back.

Only what a configuration holds: tables of scalars, lists and nested tables. TOML has no null:
an unset key is written as a comment (``# key is unset``) in a table, and left out of an inline
table inside a list (where TOML allows no comment); either way it reads back as unset.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(data: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """``{section: {key: value}}`` as a TOML document (``header`` lines become comments)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, values in data.items():
        _table(lines, [name], values)
    return "\n".join(lines) + "\n"


def _table(lines: list[str], path: list[str], values: Mapping[str, Any]) -> None:
    lines.extend(["", "[" + ".".join(_key(part) for part in path) + "]"])
    nested = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested.append((key, value))  # sub-tables follow the table's own keys
        elif value is None:
            lines.append(f"# {_key(key)} is unset")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested:
        _table(lines, [*path, key], value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string (both escape with \", \\ and \uXXXX).
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value if item is not None) + "]"
    if isinstance(value, Mapping):
        items = (f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    return json.dumps(str(value))
