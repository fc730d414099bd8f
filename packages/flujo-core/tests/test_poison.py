"""Values that cannot be stored: they fail their step and the run, never leave it ``running``.

A step output or context that has no JSON form every backend can store (a lone surrogate, NaN,
bytes that are not UTF-8, an object JSON does not know, a cycle) used to raise while the step
was being saved: the run stayed ``running`` and every ``resume --stale`` ran the step again.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Pipeline, PipelineContext, RunStatus, Step
from flujo.config import StateSettings
from flujo.domain.errors import InputValidationError
from flujo.state import open_backend
from flujo.testing.cli import run_flujo

LONE = b"caf\xe9".decode("utf-8", "surrogateescape")


class _Opaque:
    pass


def _cycle() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


POISON: dict[str, Any] = {
    "lone surrogate": LONE,
    "surrogate in a key": {LONE: 1},
    "nested surrogate": {"a": [1, {"b": LONE}]},
    "nan": math.nan,
    "infinity in a list": [1.0, math.inf],
    "bytes not utf-8": b"\xff\xfe",
    "unknown object": _Opaque(),
    "cycle": _cycle(),
}


def _config(uri: str, tmp_path: Path) -> FlujoConfig:
    # state_uri is absolute for SQLite too, so the config needs no root.
    return FlujoConfig(state=StateSettings(uri=uri))


calls: list[str] = []


@pytest.mark.parametrize("kind", list(POISON))
async def test_unstorable_output_fails_its_step_and_the_run(
    kind: str, state_uri: str, tmp_path: Path
) -> None:
    calls.clear()

    def poison(x: str) -> Any:
        calls.append("poison")
        return POISON[kind]

    def after(x: Any) -> str:
        calls.append("after")
        return "never"

    pipeline = Step.from_callable(poison) >> Step.from_callable(after)
    async with Flujo(pipeline, config=_config(state_uri, tmp_path)) as runner:
        result = await runner.run_async("in")
    assert result.status is RunStatus.FAILED
    assert calls == ["poison"]  # the next step never ran
    assert result.error is not None
    assert result.error.startswith("the output of step 'poison' cannot be stored: ")
    assert [s.status.value for s in result.steps] == ["failed"]

    backend = open_backend(StateSettings(uri=state_uri), tmp_path)
    await backend.open()
    try:
        stored = await backend.get_run(result.run_id)
        assert stored is not None
        assert stored.status is RunStatus.FAILED
        assert stored.error == result.error
        assert [(s.name, s.status.value, s.output) for s in stored.steps] == [
            ("poison", "failed", None)
        ]
        # Recovery never picks a failed run up, so the step is never executed again.
        assert await backend.claim_stale("other", 30, limit=10) == []
    finally:
        await backend.close()


class _Ctx(PipelineContext):
    note: str = ""
    score: float = 0.0


@pytest.mark.parametrize(
    ("field", "value"), [("note", LONE), ("score", math.nan), ("score", -math.inf)]
)
async def test_unstorable_context_fails_the_step(
    field: str, value: Any, state_uri: str, tmp_path: Path
) -> None:
    def ok(x: str, context: _Ctx) -> str:
        context.note = "kept"
        return x

    def spoil(x: str, context: _Ctx) -> str:
        setattr(context, field, value)
        return x

    pipeline = Step.from_callable(ok) >> Step.from_callable(spoil)
    async with Flujo(pipeline, config=_config(state_uri, tmp_path)) as runner:
        result = await runner.run_async("in")
        stored = await runner.runtime.state.get_run(result.run_id)
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("the context after step 'spoil' cannot be stored: ")
    assert stored is not None
    assert stored.status is RunStatus.FAILED
    # The stored context is the last one that could be stored, so a resume starts from it.
    assert stored.context["note"] == "kept"
    assert stored.context["score"] == 0.0
    assert stored.current_step == 1


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize(
    "exc",
    [ValueError(f"bad {LONE}"), ValueError("nul \x00 byte"), _BadStr()],
    ids=["surrogate", "nul", "str-raises"],
)
async def test_an_error_message_that_cannot_be_stored_is_stored_escaped(
    exc: Exception, state_uri: str, tmp_path: Path
) -> None:
    def boom(x: str) -> str:
        raise exc

    async with Flujo(
        Pipeline([Step.from_callable(boom)]), config=_config(state_uri, tmp_path)
    ) as runner:
        result = await runner.run_async("in")
        stored = await runner.runtime.state.get_run(result.run_id)
    assert result.status is RunStatus.FAILED
    assert stored is not None
    assert stored.status is RunStatus.FAILED
    assert stored.error == result.error
    assert result.error is not None
    result.error.encode("utf-8")  # storable text: no lone surrogate
    assert "\x00" not in result.error
    assert result.error.startswith(type(exc).__name__)


@pytest.mark.parametrize("where", ["input", "context"])
async def test_an_unstorable_input_or_context_is_refused_before_anything_is_stored(
    where: str, state_uri: str, tmp_path: Path
) -> None:
    pipeline = Pipeline([Step.from_callable(str.upper, name="up")])
    async with Flujo(pipeline, context_model=_Ctx, config=_config(state_uri, tmp_path)) as runner:
        data, context = ({"text": LONE}, None) if where == "input" else ("x", {"note": LONE})
        with pytest.raises(InputValidationError, match=f"^the run's {where} cannot be stored: "):
            await runner.run_async(data, context=context)
        assert await runner.runtime.state.list_runs() == []


PIPELINE = """
import pathlib
from flujo import Step

HERE = pathlib.Path(__file__).parent

def charge(x: str) -> str:
    with open(HERE / "charges", "a") as fh:
        fh.write("x\\n")
    return b"caf\\xe9".decode("utf-8", "surrogateescape")

def after(x: str) -> str:
    return x

pipeline = Step.from_callable(charge) >> Step.from_callable(after)
"""


def test_cli_poison_output_is_a_failed_run_that_recovery_leaves_alone(
    state_uri: str, tmp_path: Path
) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE)
    env = {"FLUJO_LOAD_PLUGINS": "", "FLUJO__STATE__URI": state_uri}
    proc = run_flujo("run", "pipe.py:pipeline", "--input", "in", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "failed"
    assert "the output of step 'charge' cannot be stored" in out["error"]
    shown = run_flujo("runs", "show", out["run_id"], "--json", cwd=tmp_path, env=env)
    assert json.loads(shown.stdout)["status"] == "failed"
    stale = run_flujo("runs", "resume", "--stale", "--json", cwd=tmp_path, env=env)
    assert stale.returncode == 0, stale.stderr
    assert json.loads(stale.stdout) == []
    assert (tmp_path / "charges").read_text() == "x\n"  # the card was charged once


def _flujo_bytes(args: list[bytes], cwd: Path, stdin: bytes | None = None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUJO")}
    env["FLUJO_LOAD_PLUGINS"] = ""
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"flujo", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    return proc.returncode, proc.stderr.decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("how", ["argv", "file", "stdin", "context", "context-escape"])
def test_cli_non_utf8_input_or_context_is_a_user_error(how: str, tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from flujo import Pipeline, Step\n"
        "def echo(x: str) -> str:\n    return x\n"
        "pipeline = Pipeline([Step.from_callable(echo)])\n"
    )
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///state.db"\n')
    (tmp_path / "in.txt").write_bytes(b"caf\xe9")
    run = [b"run", b"pipe.py:pipeline"]
    stdin = None
    if how == "argv":
        args = [*run, b"--input", b"caf\xe9"]
    elif how == "file":
        args = [*run, b"--input", b"@in.txt"]
    elif how == "stdin":
        args, stdin = [*run, b"--input", b"-"], b"caf\xe9"
    elif how == "context":
        args = [*run, b"--input", b"x", b"--context", b'{"a": "caf\xe9"}']
    else:
        args = [*run, b"--input", b"x", b"--context", b'{"a": "\\udce9"}']
    code, stderr = _flujo_bytes(args, tmp_path, stdin)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: --context" if how.startswith("context") else "error: --input")
    assert "UTF-8" in stderr or "cannot be stored" in stderr


class _Varied(PipelineContext):
    """A context with fields of every kind the stored form turns into text."""

    model_config = {"arbitrary_types_allowed": True}
    when: Any = None
    amount: Any = None
    raw: bytes = b"abc"
    tags: set[int] = {3, 1}
    nested: dict[str, Any] = {"x": [1, (2, 3)], "y": {"z": None}}
    opaque: Any = None


def test_a_context_is_stored_as_its_stored_form_in_one_pass() -> None:
    # The step loop encodes the context in one pass when no policy scrubs it: the text must be
    # exactly what encoding its stored form gives (what is scrubbed and observed elsewhere),
    # and a value with no strict JSON form is refused the same way.
    import datetime
    import decimal

    from flujo.application.scrubbing import stored_form
    from flujo.domain.errors import UnstorableValueError
    from flujo.state._rows import dumps, dumps_stored

    context = _Varied(
        when=datetime.datetime(2020, 1, 2, 3, 4, 5),
        amount=decimal.Decimal("1.10"),
        opaque=_Opaque(),
    )
    assert dumps_stored(context) == dumps(stored_form(context))
    for bad in (math.nan, LONE, b"caf\xe9"):
        with pytest.raises(UnstorableValueError):
            dumps_stored(_Varied(opaque=bad))
