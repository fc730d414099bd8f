"""``flujo memory ...`` as a user runs it (real subprocesses)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flujo.testing.cli import help_imports, read_table, run_flujo

DIST = "flujo-memory"


def flujo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_flujo(*args, cwd=cwd)


def test_plugins_lists_memory(tmp_path: Path) -> None:
    proc = flujo("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry: dict[str, Any] = {e["name"]: e for e in json.loads(proc.stdout)}[DIST]
    assert entry["status"] == "ok", entry["error"]
    assert entry["registered"] == {
        "vector_stores": ["chroma", "memory", "pgvector", "qdrant"],
        "embedders": ["fastembed", "hashing", "openai", "wordllama"],
    }
    assert entry["sections"] == ["memory"]


def test_search_and_stats_are_written_for_people(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    """A header and aligned columns, UTC times with Z, outside text on one line with its
    control characters escaped, and "-" rather than "None" for what is absent."""
    config_file(scope_fields=["tenant"])
    for text in ("the vpn needs mfa", "vpn\nsecond line \x1b]0;title\x07 and more"):
        added = flujo("memory", "add", text, "--scope", "tenant=acme", cwd=tmp_path)
        assert added.returncode == 0, added.stderr
    found = flujo("memory", "search", "vpn", "--scope", "tenant=acme", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split("\n")[0].split() == ["SCORE", "ID", "CREATED", "RUN", "TEXT"]
    rows = read_table(found.stdout)
    assert len(rows) == 2
    assert {r["TEXT"] for r in rows} == {
        "the vpn needs mfa",
        "vpn second line \\x1b]0;title\\x07 and more",
    }
    assert "\x1b" not in found.stdout
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["CREATED"]), row
        assert row["RUN"] == "-"  # added by hand, not by a run
    data = json.loads(
        flujo("memory", "search", "vpn", "--scope", "tenant=acme", "--json", cwd=tmp_path).stdout
    )
    for hit in data:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", hit["created_at"])
    stats = flujo("memory", "stats", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "None" not in stats.stdout
    assert re.search(r"^last_error +-$", stats.stdout, re.M), stats.stdout
    assert json.loads(flujo("memory", "stats", "--json", cwd=tmp_path).stdout)["last_error"] is None


def test_add_search_stats_forget_reindex(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    config_file(scope_fields=["tenant"])
    added = flujo(
        "memory",
        "add",
        "the vpn needs mfa",
        "--scope",
        "tenant=acme",
        "--meta",
        "source=wiki",
        "--meta",
        "page=3",
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    memory_id = added.stdout.strip()
    flujo("memory", "add", "globex vpn is open", "--scope", "tenant=globex", cwd=tmp_path)

    found = flujo("memory", "search", "vpn", "--scope", "tenant=acme", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    [hit] = json.loads(found.stdout)
    assert hit["id"] == memory_id
    assert hit["text"] == "the vpn needs mfa"
    assert hit["metadata"] == {"source": "wiki", "page": 3, "scope.tenant": "acme"}
    filtered = flujo(
        "memory",
        "search",
        "vpn",
        "--scope",
        "tenant=acme",
        "--meta",
        "page=4",
        "--json",
        cwd=tmp_path,
    )
    assert json.loads(filtered.stdout) == []
    plain = flujo("memory", "search", "vpn", "--scope", "tenant=acme", cwd=tmp_path)
    assert "the vpn needs mfa" in plain.stdout

    stats = flujo("memory", "stats", "--json", cwd=tmp_path)
    data = json.loads(stats.stdout)
    assert data["memories"] == 2
    assert data["recorded_embedder"] == "wordllama:l2_supercat:256"

    reindexed = flujo("memory", "reindex", cwd=tmp_path)
    assert reindexed.returncode == 0, reindexed.stderr
    assert "re-embedded 2 memories" in reindexed.stdout

    gone = flujo("memory", "forget", "--scope", "tenant=acme", "--json", cwd=tmp_path)
    assert json.loads(gone.stdout) == {"store": 1, "outbox": 0}
    again = flujo("memory", "search", "vpn", "--scope", "tenant=acme", "--json", cwd=tmp_path)
    assert json.loads(again.stdout) == []


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, config_file: Callable[..., Path]) -> None:
    config_file(scope_fields=["tenant"])
    cases = [
        (["memory", "search", "vpn"], "no value for scope field 'tenant'"),
        (["memory", "search", "vpn", "--scope", "team=x"], "unknown scope field(s) team"),
        (["memory", "add", "x", "--scope", "tenant"], "expected KEY=VALUE"),
        (["memory", "forget"], "exactly one of --scope, --run, --id"),
        (["memory", "add", "   ", "--scope", "tenant=a"], "cannot remember an empty text"),
    ]
    for args, message in cases:
        proc = flujo(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr

    config_file(store="nope")
    proc = flujo("memory", "stats", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown vector store 'nope'" in proc.stderr

    config_file(bogus=1)
    proc = flujo("memory", "stats", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown key 'bogus'" in proc.stderr

    config_file(url="http://127.0.0.1:9")
    proc = flujo("memory", "stats", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach the Qdrant server" in proc.stderr


def test_help_does_not_import_the_commands(tmp_path: Path) -> None:
    heavy = ["flujo_memory.commands", "numpy", "qdrant_client", "qdrant_edge"]
    out, imported = help_imports(heavy, cwd=tmp_path)
    assert "memory" in out
    assert imported == []


def test_no_command_creates_the_state_database(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    """Memories live in the vector store; the state database only holds the outbox. Without
    one, reads see an empty outbox and nothing makes `.flujo/flujo.db` (or the store's
    folder, for reads) appear."""
    config_file()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for args in (["search", "vpn"], ["stats"], ["forget", "--id", "abc"]):
        proc = flujo("memory", *args, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before, args
    stats = json.loads(flujo("memory", "stats", "--json", cwd=tmp_path).stdout)
    assert (stats["outbox_pending"], stats["memories"]) == (0, 0)


def test_forget_by_run_takes_a_full_id_or_a_prefix_of_a_known_run(
    tmp_path: Path, config_file: Callable[..., Path]
) -> None:
    """A full id needs no state database (memories outlive it); a prefix must name one run."""
    config_file()
    full = flujo("memory", "forget", "--run", "0123456789abcdef0123456789abcdef", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    assert full.stdout.strip() == "forgot 0 stored and 0 queued memories"
    prefix = flujo("memory", "forget", "--run", "0123456789ab", cwd=tmp_path)
    assert prefix.returncode == 2
    assert prefix.stderr.strip() == "error: no run with id '0123456789ab'"
