"""``flujo config show`` prints TOML that reads back as the same configuration."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from flujo.cli._toml import dumps
from flujo.testing.cli import run_flujo


def test_nested_tables_unset_keys_and_odd_values_read_back() -> None:
    data = {
        "governance": {
            "policies": ["pii"],
            "pii": {"engine": "regex", "presidio_model": None, "overrides": [{"a": 1, "b": None}]},
            "tools": {"allow": None, "deny": ["x.*"]},
        },
        "odd": {
            "dotted.key": 'quote " and \\ and \u2028 and \x00',
            "inf": float("inf"),
            "small": 1e-300,
            "flag": False,
            "nested_list": [[1, 2], ["a"]],
        },
    }
    text = dumps(data, header="two\nlines")
    parsed = tomllib.loads(text)
    assert parsed["governance"]["pii"] == {"engine": "regex", "overrides": [{"a": 1}]}
    assert parsed["governance"]["tools"] == {"deny": ["x.*"]}
    assert parsed["odd"] == data["odd"]
    assert "# presidio_model is unset" in text
    assert text.startswith("# two\n# lines\n")


def test_config_show_feeds_back_through_flujo_config(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///runs.db"\nlease_s = 12.5\n'
        '[run]\npolicies = ["a", "b"]\nmax_requests = 3\n'
    )
    env = {"FLUJO_LOAD_PLUGINS": ""}
    shown = run_flujo("config", "show", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    copy = tmp_path / "copy.toml"
    copy.write_text(shown.stdout)
    tomllib.loads(shown.stdout)  # valid TOML
    first = json.loads(run_flujo("config", "show", "--json", cwd=tmp_path, env=env).stdout)
    again = run_flujo(
        "config", "show", "--json", cwd=tmp_path, env={**env, "FLUJO_CONFIG": str(copy)}
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["config"] == first["config"]
