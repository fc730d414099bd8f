"""flujo-memory's section of ``flujo runs show``: what the run wrote to memory, through the
real command with only flujo-core and flujo-memory (embedded qdrant, hashing embedder)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from flujo.testing.cli import flujo_json, run_flujo

ENV = {"FLUJO_LOAD_PLUGINS": "flujo-memory"}


def test_runs_show_has_the_runs_memory_writes(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Step\n"
        "def note(text: str) -> str:\n"
        "    return 'noted: ' + text\n"
        "pipeline = Step.from_callable(note)\n",
        encoding="utf-8",
    )
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///runs.db"\n'
        '[memory]\nindex_steps = ["note"]\nembedder = "hashing"\n',
        encoding="utf-8",
    )
    run_id = flujo_json(
        "run", "pipe.py:pipeline", "--input", "tea", "--json", cwd=tmp_path, env=ENV
    )["run_id"]
    section = flujo_json("runs", "show", run_id, "--json", cwd=tmp_path, env=ENV)["sections"][
        "flujo-memory"
    ]
    assert section["error"] is None
    assert section["fields"] == {"in the store": 1, "waiting": 0, "failed": 0}
    assert section["data"] == {"indexed": 1, "outbox": []}

    # A row that failed to index is listed with its error.
    with closing(sqlite3.connect(tmp_path / "runs.db")) as db:
        db.execute(
            "INSERT INTO flujo_memory_outbox (id, run_id, step_name, scope, scope_values, text, "
            "metadata, created_at, status, attempts, last_error) VALUES ('m2', ?, 'note', '', "
            "'{}', 'later', '{}', 1, 'failed', 5, 'embedder down')",
            (run_id,),
        )
        db.commit()
    text = run_flujo("runs", "show", run_id, cwd=tmp_path, env=ENV)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    at = lines.index("Memory writes (flujo-memory)")
    assert lines[at + 3] == "  failed        1"
    assert lines[at + 4].split() == ["step", "status", "attempts", "error", "text"]
    assert lines[at + 5].split() == ["note", "failed", "5", "embedder", "down", "later"]
