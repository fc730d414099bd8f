"""Meta-tests: every hookspec is documented and versioned.

For each ``flujo_*`` hookspec in :mod:`flujo.plugins.hookspecs`:

- its docstring carries a ``.. versionadded::`` note;
- ``docs/plugins.md`` names it in a heading or in code, and shows an example implementation
  (``def flujo_x(`` in a fenced code block);

That the core actually calls every hookspec is checked by running them: ``test_hooks_called.py``.

The docs checks need the repository checkout. Run from an installed wheel outside the repo, they
skip with the reason, except in CI (``CI=true``), where a missing checkout is a failure.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from flujo.plugins import hookspecs

DOC = Path("docs") / "plugins.md"
THIS_FILE = Path(__file__).resolve()


def _hookspecs() -> dict[str, Callable[..., Any]]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"  # the attribute pluggy's HookspecMarker sets
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("flujo_") and hasattr(fn, marker)
    }


HOOKS = _hookspecs()
HOOK_NAMES = sorted(HOOKS)


def _find_repo_root() -> Path | None:
    """The nearest ancestor of this file holding ``docs/plugins.md`` and ``packages/``."""
    for folder in THIS_FILE.parents:
        if (folder / DOC).is_file() and (folder / "packages").is_dir():
            return folder
    return None


@pytest.fixture(scope="module")
def repo_root() -> Path:
    root = _find_repo_root()
    if root is None:
        reason = (
            f"no repository checkout around {THIS_FILE} (looked for {DOC.as_posix()} and "
            "packages/ in its parent folders); the docs and test-coverage checks need one"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: not skipping)")
        pytest.skip(reason)
    return root


# ------------------------------------------------------------------ parsing docs/plugins.md

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")


@cache
def _doc_parts(doc: Path) -> tuple[str, str, str]:
    """``(headings, code, code_blocks)``: the text of every heading, of all code (fenced and
    inline, headings included), and of fenced code blocks only."""
    headings: list[str] = []
    code: list[str] = []
    blocks: list[str] = []
    in_block = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_block = not in_block
            continue
        if in_block:
            blocks.append(line)
            continue
        if line.startswith("#"):
            headings.append(line)
        code.extend(m.group(2) for m in _INLINE_CODE.finditer(line))
    return "\n".join(headings), "\n".join([*code, *blocks]), "\n".join(blocks)


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


# ------------------------------------------------------------------ checks


def test_hookspecs_are_found() -> None:
    """Guards the other checks: the spec module has hooks and they are all pluggy specs."""
    assert len(HOOKS) >= 10, f"only found hookspecs {HOOK_NAMES}"
    stray = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("flujo_") and name not in HOOKS
    ]
    assert not stray, f"functions named flujo_* without @hookspec in hookspecs.py: {stray}"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hookspec_has_versionadded(name: str) -> None:
    doc = inspect.getdoc(HOOKS[name]) or ""
    assert doc.strip(), f"hookspec {name} has no docstring"
    assert re.search(r"\.\. versionadded:: \d+\.\d+", doc), (
        f"the docstring of hookspec {name} needs a '.. versionadded:: X.Y' note"
    )


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hook_is_documented(repo_root: Path, name: str) -> None:
    headings, code, blocks = _doc_parts(repo_root / DOC)
    assert _mentions(headings, name) or _mentions(code, name), (
        f"{DOC.as_posix()} does not mention hook {name} in a heading or in code"
    )
    assert re.search(rf"\bdef {re.escape(name)}\(", blocks), (
        f"{DOC.as_posix()} has no example implementation of {name} "
        f"(a fenced code block with 'def {name}(')"
    )


# ------------------------------------------------------------------ data types


def _data_types() -> list[type]:
    from flujo import plugin

    return [
        plugin.Memory,
        plugin.ScoredMemory,
        plugin.SandboxLimits,
        plugin.ExecutionResult,
        plugin.EvaluationResult,
        plugin.StepResult,
        plugin.RunRecord,
        plugin.StateLocation,
        plugin.StepWrite,
        plugin.Usage,
        plugin.Operation,
    ]


@pytest.mark.parametrize("cls", _data_types(), ids=lambda c: c.__name__)
def test_every_field_of_the_data_types_is_documented(cls: type, repo_root: Path) -> None:
    """docs/plugins.md's "The data types" names every field of each type plugins exchange."""
    import dataclasses

    text = (repo_root / DOC).read_text(encoding="utf-8")
    start = text.index("### The data types")
    section = text[start : text.index("\n## ", start)]
    assert f"`{cls.__name__}`" in section, f"{cls.__name__} is not in the data types section"
    missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}`" not in section]
    assert not missing, f"{cls.__name__} fields not documented: {missing}"
