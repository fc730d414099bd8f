"""The plugin as installed: discovered through its entry point, cheap to import, listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flujo.plugins.manager import PluginManager


def test_discovered_through_the_entry_point() -> None:
    manager = PluginManager(strict=True)
    manager.load_entry_points(environ={"FLUJO_LOAD_PLUGINS": "flujo-evals"})
    (info,) = [p for p in manager.plugins if p.name == "flujo-evals"]
    assert info.status == "ok", info.error
    assert info.registered["evaluators"] == ["json_schema", "judge", "python", "regex"]
    assert [m.owner for m in manager.migrations("sqlite")] == ["flujo-evals"]


def test_flujo_plugins_lists_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    proc = subprocess.run(
        [sys.executable, "-m", "flujo", "plugins", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (entry,) = [p for p in json.loads(proc.stdout) if p["name"] == "flujo-evals"]
    assert entry["status"] == "ok"
    assert entry["sections"] == ["eval"]
    assert set(entry["hooks"]) == {
        "flujo_config_sections",
        "flujo_register_commands",
        "flujo_register_evaluators",
        "flujo_run_finalized",
        "flujo_run_view",
        "flujo_runtime_started",
        "flujo_storage_migrations",
    }


def test_importing_the_hooks_module_stays_cheap(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import flujo_evals.plugin\n"
        "heavy = ['flujo_evals.engine', 'flujo_evals.evaluators', 'flujo_evals.commands', "
        "'flujo_evals.settings', 'click', 'pydantic_ai']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_help_lists_evals_without_importing_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    proc = subprocess.run(
        [sys.executable, "-m", "flujo", "evals", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("list", "show", "summary", "backfill"):
        assert command in proc.stdout
