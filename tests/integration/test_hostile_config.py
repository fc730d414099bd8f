"""A broken flujo.toml with a plugin installed: its commands name the file (exit 2), --help
says why plugins are missing, and `flujo plugins` lists them as not loaded (none imported: the
disable list could not be read, so loading one could load a disabled plugin)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flujo.testing.cli import run_flujo


@pytest.mark.parametrize(
    "content",
    [b"[run]\nmax_requests = 'caf\xe9'\n", b"[state\n", b"[plugins]\ndisable = 3\n"],
    ids=["not-utf8", "not-toml", "bad-plugins-table"],
)
def test_a_plugin_command_and_listing_with_a_hostile_config(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "flujo.toml"
    path.write_bytes(content)
    env = {"FLUJO_LOAD_PLUGINS": "flujo-memory"}
    proc = run_flujo("memory", "stats", cwd=tmp_path, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"error: {path}")
    assert len(proc.stderr.strip().splitlines()) == 1
    shown = run_flujo("--help", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Plugins not loaded:" in shown.stdout
    listed = run_flujo("plugins", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 2
    memory = [p for p in json.loads(listed.stdout) if p["name"] == "flujo-memory"]
    assert memory == [
        {**memory[0], "status": "disabled", "error": "not loaded: the configuration cannot be read"}
    ]
