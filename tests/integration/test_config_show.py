"""With every plugin installed and no flujo.toml, ``flujo config show`` prints each plugin's
section with its defaults, as TOML that reads back as the same configuration."""

from __future__ import annotations

import json
from pathlib import Path

from flujo.plugins.manager import PluginManager
from flujo.testing.cli import run_flujo


def test_plugin_defaults_are_shown_and_read_back(tmp_path: Path) -> None:
    manager = PluginManager()
    manager.load_entry_points()
    sections = set(manager.config_sections())
    assert {"governance", "memory", "sandbox", "eval"} <= sections
    shown = run_flujo("config", "show", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# no flujo.toml found: defaults")
    for name in sections:
        assert f"\n[{name}]\n" in shown.stdout, name
    copy = tmp_path / "copy.toml"
    copy.write_text(shown.stdout)
    first = json.loads(run_flujo("config", "show", "--json", cwd=tmp_path).stdout)["config"]
    again = run_flujo("config", "show", "--json", cwd=tmp_path, env={"FLUJO_CONFIG": str(copy)})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["config"] == first
    assert sections <= set(first)
