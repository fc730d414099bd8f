"""Running the ``flujo`` command in tests, as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _environ(env: Mapping[str, str] | None) -> dict[str, str]:
    # The developer's own FLUJO_* settings never leak into a test; it passes what it needs.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    return {**clean, **(env or {})}


def run_flujo(
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flujo ARGS`` in ``cwd`` and return what it printed and its exit code.

    The subprocess gets this process's environment without its ``FLUJO_*`` variables, plus
    ``env`` (set ``FLUJO_LOAD_PLUGINS`` there to choose which installed plugins load). It uses
    the current interpreter, so it sees the same installed packages as the test.
    """
    return subprocess.run(
        [sys.executable, "-m", "flujo", *args],
        cwd=cwd,
        env=_environ(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_flujo_after_upgrade(
    module: str,
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """:func:`run_flujo` as if the plugin were upgraded since its tables were made: the
    plugin module ``module``'s ``migrations(dialect)`` gains one migration after its last
    (a new table), as the next release of the plugin would ship. An existing database is then
    outdated for it; a read-only command must say so, and ``flujo state upgrade`` (run
    through this too) applies the new migration."""
    return subprocess.run(
        [sys.executable, "-c", _AFTER_UPGRADE, module, *args],
        cwd=cwd,
        env=_environ(env),
        input=None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The module name and the arguments are argv, data: nothing from the test is spliced in here.
_AFTER_UPGRADE = """
import importlib, sys
from flujo.domain.interfaces import Migration
module = importlib.import_module(sys.argv[1])
released = module.migrations
def migrations(dialect):
    found = list(released(dialect))
    last = max(found, key=lambda m: m.version)
    table = "flujo_test_next_" + last.owner.replace("-", "_")
    return [*found, Migration(last.owner, last.version + 1, (f"CREATE TABLE {table} (id TEXT)",))]
module.migrations = migrations
from flujo.cli import main
main(sys.argv[2:])
"""


def flujo_json(*args: str, cwd: Path | str, env: Mapping[str, str] | None = None) -> Any:
    """``flujo ARGS`` (give ``--json`` among them) that must succeed: its stdout, parsed.

    Fails with what the command printed on stderr when it exits non-zero or prints anything
    but one JSON document.
    """
    proc = run_flujo(*args, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"flujo {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"flujo {' '.join(args)} printed no JSON: {proc.stdout!r}") from None


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    """Wait until the child ``proc`` creates ``path`` (e.g. a step's marker file).

    Fails at once if the child exits first, and kills it past ``timeout_s``: a test waits on
    the event, never on a guessed sleep.
    """
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"the child exited before {path.name} appeared: {proc.communicate()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path.name} never appeared: {proc.communicate()}")
        time.sleep(0.01)


_HELP_PROBE = """
import json, sys
from flujo.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
sys.stderr.write("\\n" + json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))
"""


def help_imports(
    modules: Sequence[str], *, cwd: Path | str, env: Mapping[str, str] | None = None
) -> tuple[str, list[str]]:
    """``flujo --help``'s output, and which of ``modules`` it imported.

    A plugin whose commands load lazily expects ``[]``: listing commands must not import them
    (or anything heavy they need).
    """
    proc = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE.format(modules=list(modules))],
        cwd=cwd,
        env=_environ(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        imported = json.loads(proc.stderr.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise AssertionError(f"flujo --help failed: {proc.stderr}") from None
    return proc.stdout, [str(m) for m in imported]


def read_table(text: str) -> list[dict[str, str]]:
    """The rows of a table a ``flujo`` listing printed, as ``{HEADER: cell}``, after checking
    that it has a header row and aligned columns.

    Each column starts where its header word starts (headers are single words, and a column
    aligned right is no wider than its header), so every line must have a space just before
    each column's start: a cell that spills over breaks the check.
    """
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    names = header.split()
    if not names or header != header.upper():
        raise AssertionError(f"no header row: {header!r}")
    starts: list[int] = []
    for name in names:
        starts.append(header.index(name, starts[-1] + 1 if starts else 0))
    rows = []
    for line in lines[1:]:
        for start in starts[1:]:
            if len(line) > start and line[start - 1] != " ":
                raise AssertionError(f"column at {start} not aligned in {line!r} ({header!r})")
        bounds = [*starts[1:], len(line) + 1]
        rows.append({n: line[s:e].strip() for n, s, e in zip(names, starts, bounds, strict=True)})
    return rows
