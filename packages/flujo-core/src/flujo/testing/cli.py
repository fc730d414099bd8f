"""Running the ``flujo`` command in tests, as a user would: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_flujo(
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flujo ARGS`` in ``cwd`` and return what it printed and its exit code.

    ``env`` is added to this process's environment (set ``FLUJO_LOAD_PLUGINS`` in it to
    choose which installed plugins load). Uses the current interpreter, so the subprocess sees
    the same installed packages as the test.
    """
    return subprocess.run(
        [sys.executable, "-m", "flujo", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
