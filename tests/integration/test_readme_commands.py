"""Every ``flujo ...`` command a README shows names a command and options that exist.

Read from the fenced shell blocks of every README and doc (root, packages, docs, examples),
so a renamed command or option breaks this test rather than a newcomer's first hour. The
commands are resolved in the real ``flujo`` group with every plugin installed; running them
is left to the tests of each example (flujo-sandbox runs its README's commands as written).
Commands of plugins that are not installed here (the example plugin, a hypothetical one in
docs) are reported as such and not checked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

from flujo.cli._app import make_app

ROOT = Path(__file__).resolve().parents[2]
NOT_INSTALLED = {"example-hello", "deny-words"}
"""Commands of plugins these tests do not install (the README says how to install them)."""


def shown_commands() -> list[tuple[str, list[str]]]:
    docs = [ROOT / "README.md", *ROOT.glob("packages/*/README.md"), *ROOT.glob("docs/**/*.md")]
    docs += [*ROOT.glob("examples/**/README.md")]
    found: list[tuple[str, list[str]]] = []
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        for lang, block in re.findall(r"```(bash|console|sh|shell)\n(.*?)```", text, re.S):
            for line in block.splitlines():
                if lang == "console":
                    if not line.startswith("$ "):
                        continue  # a console block's other lines are output
                    line = line[2:]
                for part in re.split(r"\s(?:\||&&|;)\s", line):
                    words = _words(part)
                    if words and words[0] == "flujo":
                        found.append((f"{doc.relative_to(ROOT)}: {part.strip()}", words[1:]))
    return found


def _words(part: str) -> list[str]:
    try:
        words = shlex.split(part, comments=True)
    except ValueError:  # an unbalanced quote in prose-like lines: not a command
        return []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words = words[1:]  # VAR=value flujo ...
    return words


def _check(app: click.Group, words: list[str]) -> str | None:
    """Why ``flujo WORDS`` would not parse, or ``None``."""
    ctx = click.Context(app)
    command: click.Command = app
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.get_command(ctx, name)
        if sub is None:
            return f"no command {name!r}"
        command = sub
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    options |= {"--help", "-h"}
    for word in rest:
        if word.startswith("[") and word.endswith("]"):
            word = word[1:-1]  # [--json]: an optional flag
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            if flag not in options:
                return f"no option {flag} (has {', '.join(sorted(options))})"
    return None


def test_readme_commands_exist() -> None:
    app = make_app()
    shown = shown_commands()
    assert len(shown) >= 15, shown
    problems = []
    for where, words in shown:
        if words and words[0] in NOT_INSTALLED:
            continue
        why = _check(app, words)
        if why is not None:
            problems.append(f"{where}: {why}")
    assert not problems, "\n".join(problems)
