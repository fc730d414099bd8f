"""The plugin as the ``flujo`` command line sees it (run as a real subprocess)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flujo.testing.cli import help_imports, run_flujo

DIST = "flujo-plugin-example"


def flujo(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flujo ARGS`` in ``cwd`` with no FLUJO_* variables from the outside."""
    return run_flujo(*args, cwd=cwd, env=env)


def listed(stdout: str) -> dict[str, dict[str, Any]]:
    data = json.loads(stdout)
    assert isinstance(data, list)
    return {entry["name"]: entry for entry in data}


def test_plugins_json_lists_the_example(tmp_path: Path) -> None:
    proc = flujo("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = listed(proc.stdout)[DIST]
    assert entry["status"] == "ok", entry["error"]
    assert entry["error"] is None
    assert entry["version"] == "0.1.0"
    assert entry["entry_point"] == "flujo_plugin_example.plugin"
    assert entry["registered"] == {
        "policies": ["deny_words"],
        "vector_stores": ["example_dict"],
        "embedders": ["example_trigram"],
        "sandboxes": ["example_bwrap"],
        "evaluators": ["example_clean_output"],
        "tools": ["example.word_count"],
        "state_backends": ["example-sqlite"],
    }
    assert entry["sections"] == ["example"]
    assert set(entry["hooks"]) == {
        "flujo_config_sections",
        "flujo_register_commands",
        "flujo_register_embedders",
        "flujo_register_evaluators",
        "flujo_register_policies",
        "flujo_register_sandboxes",
        "flujo_register_state_backends",
        "flujo_register_tools",
        "flujo_register_vector_stores",
        "flujo_run_view",
        "flujo_storage_migrations",
        "flujo_wrap_step",
    }


def test_plugins_hook_filter(tmp_path: Path) -> None:
    proc = flujo("plugins", "--json", "--hook", "flujo_register_policies", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert DIST in listed(proc.stdout)
    proc = flujo("plugins", "--json", "--hook", "flujo_run_finalized", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert DIST not in listed(proc.stdout)


def test_plugins_table(tmp_path: Path) -> None:
    proc = flujo("plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(DIST))
    assert "ok" in line
    assert "deny_words" in line


def test_plugins_shows_disabled(tmp_path: Path) -> None:
    proc = flujo("plugins", "--json", cwd=tmp_path, env={"FLUJO_DISABLE_PLUGINS": DIST})
    assert proc.returncode == 0, proc.stderr
    assert listed(proc.stdout)[DIST]["status"] == "disabled"


@pytest.mark.parametrize(("args", "name"), [(["--name", "Ada"], "Ada"), ([], "world")])
def test_example_hello(tmp_path: Path, args: list[str], name: str) -> None:
    proc = flujo("example-hello", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"Hello, {name}! (from flujo-plugin-example)"


def test_example_hello_gone_when_disabled(tmp_path: Path) -> None:
    proc = flujo("example-hello", cwd=tmp_path, env={"FLUJO_DISABLE_PLUGINS": DIST})
    assert proc.returncode != 0
    assert "example-hello" in proc.stderr


def test_help_lists_the_command_without_importing_it(tmp_path: Path) -> None:
    out, imported = help_imports(["flujo_plugin_example.commands"], cwd=tmp_path)
    assert "example-hello" in out
    assert "Print a greeting" in out
    assert imported == []
