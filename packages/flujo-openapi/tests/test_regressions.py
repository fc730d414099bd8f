"""Regression tests for issue 16 (real-world specs), each from a minimal spec of our own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flujo_openapi.errors import GenerationError
from flujo_openapi.generator import Options, _format_with_ruff, generate, write_output

WORDS = " ".join(f"word{i}" for i in range(140))


def _write(tmp_path: Path, spec: dict[str, Any], name: str = "api.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def _ruff_clean(root: Path) -> None:
    for args in (["check", "--isolated"], ["format", "--isolated", "--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", *args, str(root)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_long_descriptions_split_into_literals_stay_valid(tmp_path: Path) -> None:
    # Stripe: a long description is emitted as several literals; one piece holding a
    # non-ASCII character (or escapes that make its line long) was itself split and
    # parenthesized, giving ("..." "...") "..." -- not Python, and ruff format failed.
    curly = "It\u2019s " + WORDS[:400]
    quoted = 'Say "hi"\n' * 40
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "F", "version": "1", "description": curly + quoted},
        "paths": {
            "/a": {
                "get": {
                    "operationId": "getA",
                    "summary": quoted,
                    "description": curly,
                    "parameters": [
                        {"name": "q", "in": "query", "description": curly, "schema": {}}
                    ],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/A"}}
                            },
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "A": {
                    "type": "object",
                    "description": curly,
                    "properties": {
                        "x": {"type": "string", "description": WORDS[:830], "default": quoted},
                        "y": {"type": "string", "enum": [WORDS[:830], curly]},
                    },
                }
            }
        },
    }
    out = tmp_path / "out"
    result = generate(str(_write(tmp_path, spec)), Options(package_name="fmt"))
    write_output(result, out)
    _ruff_clean(out)
    sys.path.insert(0, str(out))
    try:
        import fmt  # type: ignore[import-not-found]

        assert fmt.OPERATIONS["getA"].description.startswith(quoted.strip())
    finally:
        sys.path.remove(str(out))


def test_ruff_failure_shows_ruffs_error_and_the_line() -> None:
    with pytest.raises(GenerationError) as caught:
        _format_with_ruff({"pkg/m.py": b"x = 1\ny = (1 +\n"})
    message = str(caught.value)
    assert message.startswith("ruff format failed on the generated code: ")
    assert "Failed to parse pkg/m.py:" in message, message  # ruff's own words
    assert message.endswith("line 2: 'y = (1 +'"), message
