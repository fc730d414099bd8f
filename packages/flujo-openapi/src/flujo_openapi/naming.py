"""Names: tool names (<= 64 characters, unique, deterministic), Python identifiers, env vars."""

from __future__ import annotations

import hashlib
import keyword
import re
import unicodedata

__all__ = ["MAX_TOOL_NAME", "env_name", "pascal", "snake", "tool_name", "unique"]

MAX_TOOL_NAME = 64
"""The longest tool name model providers accept (OpenAI: ``^[a-zA-Z0-9_-]{1,64}$``)."""


def _words(text: str) -> list[str]:
    # Accented letters keep their base letter (``café`` -> ``cafe``).
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", text)
    return [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]


def snake(text: str, *, fallback: str = "x") -> str:
    """``"findPetsByStatus"`` -> ``"find_pets_by_status"``; always a valid identifier."""
    name = "_".join(w.lower() for w in _words(text)) or fallback
    if name[0].isdigit():
        name = f"{fallback}_{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    return name


def pascal(text: str, *, fallback: str = "X") -> str:
    """``"find_pets-byStatus"`` -> ``"FindPetsByStatus"``; always a valid identifier."""
    name = "".join(w[:1].upper() + w[1:] for w in _words(text)) or fallback
    if name[0].isdigit():
        name = fallback + name
    return name


def env_name(text: str) -> str:
    """``"petstore_auth"`` -> ``"PETSTORE_AUTH"``."""
    return snake(text).upper().strip("_")


def tool_name(operation_id: str | None, method: str, path: str) -> str:
    """The tool name for an operation, before uniqueness: its ``operationId`` made safe, or
    ``method_path``; longer than 64 characters: cut, with a hash of the full name appended."""
    base = operation_id or f"{method}_{path}"
    # Accented letters keep their base letter (``café`` -> ``cafe``), the rest becomes ``_``.
    ascii_base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_base).strip("_")
    if not name.strip("_-"):
        # Nothing usable in the operationId (non-ASCII, punctuation): method and path.
        base = f"{method}_{path}"
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", base).strip("_") or method
    if len(name) > MAX_TOOL_NAME:
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        name = f"{name[: MAX_TOOL_NAME - 9].rstrip('_')}_{digest}"
    return name


def unique(name: str, taken: set[str], *, limit: int = MAX_TOOL_NAME) -> str:
    """``name``, or ``name_2``, ``name_3``... (cut to ``limit``) -- the first not in ``taken``.

    Adds the result to ``taken``.
    """
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate = name[: limit - len(suffix)] + suffix
        n += 1
    taken.add(candidate)
    return candidate
