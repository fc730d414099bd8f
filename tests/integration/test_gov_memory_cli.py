"""``flujo memory add/search/forget`` with flujo-governance's ``pii`` policy active, as real
subprocesses: the added text is scrubbed, a flagged scope value is stored as its fingerprint,
and searching and forgetting by the real value still work."""

from __future__ import annotations

import json
from pathlib import Path

from flujo.testing.cli import run_flujo

EMAIL = "ana@example.com"
CARD = "4111 1111 1111 1111"
ENV = {"FLUJO_LOAD_PLUGINS": "flujo-governance,flujo-memory"}


def test_memory_cli_scrubs_text_and_keys_flagged_scopes(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///.flujo/flujo.db"\n[governance]\npolicies = ["pii"]\n'
        '[memory]\nscope_fields = ["user"]\nembedder = "hashing"\n',
        encoding="utf-8",
    )
    scope = f"user={EMAIL}"
    added = run_flujo(
        "memory",
        "add",
        f"call {EMAIL} about card {CARD}",
        "--scope",
        scope,
        cwd=tmp_path,
        env=ENV,
    )
    assert added.returncode == 0, added.stderr
    found = run_flujo("memory", "search", "card", "--scope", scope, "--json", cwd=tmp_path, env=ENV)
    assert found.returncode == 0, found.stderr
    [hit] = json.loads(found.stdout)
    assert hit["text"] == "call <EMAIL> about card <CREDIT_CARD>"
    assert hit["metadata"]["scope.user"].startswith("fp:")
    assert EMAIL not in found.stdout
    assert CARD not in found.stdout
    for path in (tmp_path / ".flujo").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert EMAIL.encode() not in data, path
            assert CARD.encode() not in data, path
    gone = run_flujo("memory", "forget", "--scope", scope, "--json", cwd=tmp_path, env=ENV)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout) == {"store": 1, "outbox": 0}
