"""Shared helpers: a flujo.toml in tmp_path with a [memory] section."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The pgvector server fixtures, shared with the integration tests.
from flujo_memory.testing import pgvector_database, pgvector_dsn  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def write_config(root: Path, run: dict[str, Any] | None = None, **memory: Any) -> Path:
    """Write ``root/flujo.toml`` with ``[memory]`` keys (and optional ``[run]`` keys)."""
    lines = ["[state]", 'uri = "sqlite:///.flujo/flujo.db"', "", "[memory]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in memory.items()]
    if run:
        lines += ["", "[run]"] + [f"{k} = {toml_value(v)}" for k, v in run.items()]
    path = root / "flujo.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """``config_file(**memory_keys)`` writes tmp_path/flujo.toml and returns its path."""

    def make(run: dict[str, Any] | None = None, **memory: Any) -> Path:
        return write_config(tmp_path, run, **memory)

    return make


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("FLUJO_CONFIG", "OPENAI_BASE_URL", "QDRANT_API_KEY"):
        monkeypatch.delenv(key, raising=False)
