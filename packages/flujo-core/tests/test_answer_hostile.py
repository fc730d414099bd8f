"""Answers from outside that are hostile or odd: too deeply nested, unstorable, given twice at
once from two processes, given to a run that is not paused. An answer that cannot be taken is
refused before the run is touched: the run stays paused and answerable (never left
``running`` under the refused answer's lease), and the CLI says so in one line, exit 2.

Real SQLite and PostgreSQL, real processes; the model is a deterministic pydantic-ai
``FunctionModel`` (no LLM here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, Step
from flujo.config import StateSettings
from flujo.domain.errors import FlujoError, UserError
from flujo.domain.models import RunStatus
from flujo.plugins.manager import PluginManager
from flujo.testing.cli import run_flujo


def _config(uri: str) -> FlujoConfig:
    return FlujoConfig(state=StateSettings(uri=uri), plugin_manager=PluginManager())


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "answer",
    [_nested(300), {"n": float("nan")}, {"s": "\udce9"}],
    ids=["nested 300 deep", "NaN", "lone surrogate"],
)
async def test_an_unstorable_answer_leaves_the_run_paused_and_answerable(
    state_uri: str, answer: Any
) -> None:
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.human("check")
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async("box")
        assert paused.status is RunStatus.PAUSED
        with pytest.raises(FlujoError):
            await runner.approve_async(paused.run_id, answer)
        still = await runner.runtime.state.get_run(paused.run_id)
        assert still is not None
        assert still.status is RunStatus.PAUSED, still.error
        answered = await runner.approve_async(paused.run_id, {"ok": True}, by="ann")
        assert answered.status is RunStatus.INTERRUPTED
        done = await runner.resume_async(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == {"ok": True}


async def test_answering_a_run_that_is_not_paused_is_a_user_error(state_uri: str) -> None:
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.human("check")
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async("box")
        await runner.reject_async(paused.run_id, reason="no", by="bob")
        for answer in (
            runner.approve_async(paused.run_id),
            runner.reject_async(paused.run_id, reason="x"),
        ):
            with pytest.raises(UserError, match="not paused"):
                await answer
        failed = await runner.runtime.state.get_run(paused.run_id)
    assert failed is not None
    assert failed.status is RunStatus.FAILED


PIPE = """
from flujo import Step

def first(x: str) -> str:
    return x

pipeline = Step.from_callable(first) >> Step.human("check", prompt="ship it?")
"""


@pytest.mark.parametrize("depth", [600, 5000], ids=["beyond storage", "beyond the parser"])
def test_cli_a_too_deep_answer_is_one_line_exit_2_and_the_run_stays_paused(
    tmp_path: Path, depth: int
) -> None:
    (tmp_path / "pipe.py").write_text(PIPE)
    env = {"FLUJO_LOAD_PLUGINS": ""}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "box", "--json", cwd=tmp_path, env=env)
    run_id = json.loads(ran.stdout)["run_id"]
    deep = '{"v": ' + "[" * depth + "]" * depth + "}"
    bad = run_flujo("runs", "approve", run_id, "--input", deep, cwd=tmp_path, env=env)
    assert bad.returncode == 2, bad.stderr
    [line] = bad.stderr.strip().splitlines()
    assert "Traceback" not in bad.stderr
    assert "nested" in line
    assert len(line) < 400
    shown = run_flujo("runs", "show", run_id, "--json", cwd=tmp_path, env=env)
    assert json.loads(shown.stdout)["status"] == "paused"
    ok = run_flujo("runs", "approve", run_id, "--input", '{"v": 1}', cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr


def test_cli_a_too_deep_context_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPE)
    deep = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    bad = run_flujo(
        "run",
        "pipe.py:pipeline",
        "--input",
        "box",
        "--context",
        deep,
        cwd=tmp_path,
        env={"FLUJO_LOAD_PLUGINS": ""},
    )
    assert bad.returncode == 2, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "nested" in bad.stderr


TOOL_SCRIPT = """
import asyncio, json, pathlib, sys
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import FunctionModel
from flujo import Flujo, PolicyDecision, Step, ToolApprovalRequired, make_agent_async
from flujo.domain.errors import FlujoError

HERE = pathlib.Path(__file__).parent

def model(messages, info):
    returned = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if returned:
        return ModelResponse(parts=[TextPart("done: " + str(returned[-1].content))])
    return ModelResponse(parts=[ToolCallPart("pay", {"amount": 150}, tool_call_id="c1")])

def pay(amount: int) -> str:
    with open(HERE / "paid.log", "a") as fh:
        fh.write(f"{amount}\\n")
    return f"paid {amount}"

class Big:
    name = "big"
    def inspect_input(self, context, data):
        return PolicyDecision.ALLOW, data
    def inspect_tool_call(self, context, tool_name, args):
        if args.get("amount", 0) > 100:
            raise ToolApprovalRequired(self.name, "big payment")
        return PolicyDecision.ALLOW

agent = make_agent_async(FunctionModel(model), "Pay.", tools=[pay])
pipeline = Step.from_callable(lambda x: x, name="triage") >> Step("pay", agent)

async def main() -> None:
    mode = sys.argv[1]
    async with Flujo(pipeline, policies=[Big()], pipeline_ref="pipe.py:pipeline") as r:
        try:
            if mode == "run":
                result = await r.run_async("pay")
            elif mode == "approve":
                result = await r.approve_async(sys.argv[2], by=sys.argv[3])
            else:
                result = await r.resume_async(sys.argv[2])
        except FlujoError as exc:
            print(json.dumps({"error": type(exc).__name__}))
            return
        print(json.dumps({"status": result.status.value, "run_id": result.run_id}))

asyncio.run(main())
"""


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "pipe.py", *args],
        cwd=tmp_path,
        env={**os.environ, "FLUJO_LOAD_PLUGINS": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outcome(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_two_processes_approving_and_resuming_at_once_run_the_tool_once(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(TOOL_SCRIPT)
    run_id = _outcome(_start(tmp_path, "run"))["run_id"]
    approvals = [_outcome(p) for p in [_start(tmp_path, "approve", run_id, w) for w in "ab"]]
    assert sorted(str(a.get("status") or a.get("error")) for a in approvals) in (
        ["RunLeasedError", "interrupted"],
        ["UserError", "interrupted"],
    ), approvals
    resumes = [_outcome(p) for p in [_start(tmp_path, "resume", run_id) for _ in "ab"]]
    assert "succeeded" in [r.get("status") for r in resumes], resumes
    assert (tmp_path / "paid.log").read_text().split() == ["150"]
    again = _outcome(_start(tmp_path, "approve", run_id, "c"))
    assert again == {"error": "UserError"}


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "approve"),
        ("runs", "approve", "abc", "--input", "{nope"),
        ("runs", "reject", "abc"),
        ("runs", "approve", "abc", "--bogus"),
        ("no-such-command",),
    ],
)
def test_cli_usage_errors_are_one_line_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    bad = run_flujo(*args, cwd=tmp_path, env={"FLUJO_LOAD_PLUGINS": ""})
    assert bad.returncode == 2
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "--help" in line


@pytest.mark.parametrize(
    "run_id", ["../../etc/passwd", "x' OR '1'='1", "%", "_", "a\nb", "\x1b[2J"]
)
def test_cli_answering_a_hostile_run_id_is_one_line_exit_2(tmp_path: Path, run_id: str) -> None:
    (tmp_path / "pipe.py").write_text(PIPE)
    env = {"FLUJO_LOAD_PLUGINS": ""}
    run_flujo("run", "pipe.py:pipeline", "--input", "box", cwd=tmp_path, env=env)
    for verb in (("approve",), ("reject", "--reason", "no")):
        bad = run_flujo("runs", *verb, run_id, cwd=tmp_path, env=env)
        assert bad.returncode == 2, bad.stderr
        [line] = bad.stderr.strip().splitlines()
        assert "no run with id" in line
        assert "\x1b" not in line


async def test_answering_hostile_run_ids_finds_nothing_on_both_backends(state_uri: str) -> None:
    """SQL and LIKE metacharacters, path traversal, another run's id with a wildcard in it, a
    NUL (PostgreSQL's text refuses it) or a lone surrogate (not UTF-8): nothing is found (nor
    answered), on SQLite and PostgreSQL, and the error is the user's, not the driver's."""
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.human("check")
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async("box")
        hostile = [
            "x' OR '1'='1",
            "'; DROP TABLE workflow_state; --",
            "%",
            paused.run_id[:-1] + "_",
            paused.run_id[:8] + "%",
            "../../etc/passwd",
            paused.run_id.upper(),
            paused.run_id + "\x00",
            paused.run_id[:-1] + "\udce9",
        ]
        for run_id in hostile:
            with pytest.raises(UserError, match="no run with id"):
                await runner.approve_async(run_id, {"ok": True})
            with pytest.raises(UserError, match="no run with id"):
                await runner.reject_async(run_id, reason="no")
        still = await runner.runtime.state.get_run(paused.run_id)
    assert still is not None
    assert still.status is RunStatus.PAUSED


async def test_an_answer_no_engine_can_be_told_of_is_refused_before_it_is_stored(
    tmp_path: Path,
) -> None:
    """A run driven by an engine this runner cannot reach (its plugin not installed here):
    the answer is refused before it is stored, the run stays paused, answerable where the
    engine is. Stored first, it would leave the engine (a Temporal workflow) waiting for a
    signal nobody sends, and the run answerable by no one ("not paused"). SQLite: the run's
    engine is set in the database directly (the logic is the runner's, not the backend's)."""
    import sqlite3

    from flujo.domain.errors import ConfigError

    db = tmp_path / "state.db"
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.human("check")
    async with Flujo(pipeline, config=_config(f"sqlite:///{db}")) as runner:
        paused = await runner.run_async("box")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE workflow_state SET engine = 'ghost' WHERE run_id = ?", (paused.run_id,)
        )
    async with Flujo(pipeline, config=_config(f"sqlite:///{db}")) as runner:
        with pytest.raises(ConfigError, match="ghost"):
            await runner.approve_async(paused.run_id, {"ok": True})
        still = await runner.runtime.state.get_run(paused.run_id)
    assert still is not None
    assert still.status is RunStatus.PAUSED
    assert [s.path for s in still.inner_steps if s.path.endswith("@approval")] == []
