"""The ``flujo.builtins.code_interpreter`` tool agents list in ``tools=``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flujo_sandbox.errors import (
    SandboxFileError,
    SandboxLimitError,
    SandboxRequestError,
    UnsupportedLanguageError,
)

if TYPE_CHECKING:
    from flujo.config import FlujoConfig
    from flujo.domain.interfaces import ExecutionResult

__all__ = ["TOOL_ID", "make_code_interpreter", "result_for_model"]

TOOL_ID = "flujo.builtins.code_interpreter"
PREVIEW_BYTES = 4096
"""Artifacts up to this size that are UTF-8 text are shown to the model inline."""


def result_for_model(result: ExecutionResult) -> dict[str, Any]:
    """What the model sees: output, status, and artifacts by name (small text ones inline)."""
    artifacts: dict[str, Any] = {}
    for name, data in result.artifacts.items():
        entry: dict[str, Any] = {"size": len(data)}
        if len(data) <= PREVIEW_BYTES:
            try:
                entry["text"] = data.decode("utf-8")
            except UnicodeDecodeError:
                entry["binary"] = True
        artifacts[name] = entry
    return {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "error": result.error,
        "artifacts": artifacts,
        "backend": result.backend,
    }


def make_code_interpreter(
    sandbox: Any, *, timeout_s: float | None = None
) -> Callable[..., Awaitable[str]]:
    """The tool function bound to ``sandbox``."""

    async def code_interpreter(code: str, language: str = "python") -> str:
        """Run code in an isolated sandbox and return the result as JSON.

        The sandbox has no network, an empty working folder and resource limits; each call
        starts fresh. Write files to ``out/`` to return them as artifacts.

        Args:
            code: The complete program to run.
            language: ``python`` (default) or ``bash``.

        Returns:
            JSON with ``stdout``, ``stderr``, ``exit_code``, ``timed_out``, ``truncated``,
            ``error`` and ``artifacts``.
        """
        try:
            result = await sandbox.exec_code(code, language, timeout_s=timeout_s)
        except (
            UnsupportedLanguageError,
            SandboxFileError,
            SandboxLimitError,
            SandboxRequestError,
        ) as exc:
            # The model chose these arguments: tell it, so it can try again.
            return json.dumps({"error": str(exc), "exit_code": None})
        return json.dumps(result_for_model(result))

    return code_interpreter


def create_tool(config: FlujoConfig) -> Callable[..., Awaitable[str]]:
    """The ``register()`` factory: the tool bound to the configured sandbox."""
    from flujo_sandbox.factory import configured_sandbox

    return make_code_interpreter(configured_sandbox(config))
