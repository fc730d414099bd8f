"""Human steps: a run pauses (no lease, no worker) until a person approves or rejects it, at
any depth of the tree; the answer is validated, stored with who gave it, and any worker then
resumes the run. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flujo import Flujo, FlujoConfig, Step
from flujo.config import StateSettings
from flujo.domain.errors import InputValidationError, UserError
from flujo.domain.models import RunStatus
from flujo.plugins.manager import PluginManager
from flujo.testing.cli import run_flujo


class Refund(BaseModel):
    amount: int


def _config(uri: str) -> FlujoConfig:
    return FlujoConfig(state=StateSettings(uri=uri), plugin_manager=PluginManager())


def _tree(calls: list[str]) -> Any:
    def triage(x: int) -> int:
        calls.append("triage")
        return x

    def pay(r: Refund) -> str:
        calls.append("pay")
        return f"paid {r.amount}"

    return Step.from_callable(triage) >> Step.branch(
        "route",
        lambda x: "billing",
        {
            "billing": Step.human("approve", schema=Refund, prompt="refund?")
            >> Step.from_callable(pay)
        },
    )


async def test_pause_approve_resume_inside_a_branch(state_uri: str) -> None:
    calls: list[str] = []
    pipeline = _tree(calls)
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async(150)
        assert paused.status is RunStatus.PAUSED
        assert paused.error is not None
        assert "waiting for a person at step 'route/billing/approve' (refund?)" in paused.error
        listed = await runner.runtime.state.list_runs(status=RunStatus.PAUSED)
        assert [r.run_id for r in listed] == [paused.run_id]
        with pytest.raises(InputValidationError, match="amount"):
            await runner.approve_async(paused.run_id, {"amount": "lots"})
        answered = await runner.approve_async(paused.run_id, {"amount": 120}, reason="ok", by="ann")
        assert answered.status is RunStatus.INTERRUPTED
        with pytest.raises(UserError, match="not paused"):
            await runner.approve_async(paused.run_id, {"amount": 1})
    # Any worker resumes it: a new runner; nothing before the human step runs again.
    async with Flujo(pipeline, config=_config(state_uri)) as other:
        done = await other.resume_async(paused.run_id)
        stored = await other.runtime.state.get_run(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == "paid 120"
    assert calls == ["triage", "pay"]
    assert stored is not None
    audit = {s.path: s.result.output for s in stored.inner_steps}["route/billing/approve@approval"]
    assert isinstance(audit.pop("at"), float)  # when it was answered
    assert audit == {"decision": "approved", "by": "ann", "reason": "ok", "answer": {"amount": 120}}


async def test_reject_fails_the_run_saying_who_and_why(state_uri: str) -> None:
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.human("check")
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async("refund 500 EUR")
        assert paused.status is RunStatus.PAUSED
        rejected = await runner.reject_async(paused.run_id, reason="too much", by="bob")
    assert rejected.status is RunStatus.FAILED
    assert rejected.error == "rejected at step 'check' by bob: too much"


async def test_a_top_level_approval_without_schema_passes_the_input_on(state_uri: str) -> None:
    pipeline = Step.from_callable(lambda x: x + "!", name="first") >> Step.human("check")
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async("go")
        await runner.approve_async(paused.run_id)
        done = await runner.resume_async(paused.run_id)
    assert done.output == "go!"


PIPE = """
from flujo import Step

def first(x: str) -> str:
    return x

pipeline = Step.from_callable(first) >> Step.human("check", prompt="ship it?")
"""


def test_cli_lists_paused_runs_and_approves_them(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPE)
    env = {"FLUJO_LOAD_PLUGINS": ""}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "box", "--json", cwd=tmp_path, env=env)
    run_id = json.loads(ran.stdout)["run_id"]
    assert json.loads(ran.stdout)["status"] == "paused"
    listed = run_flujo("runs", "list", "--status", "paused", "--json", cwd=tmp_path, env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    bad = run_flujo("runs", "approve", run_id, "--input", "{nope", cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert "not JSON" in bad.stderr
    ok = run_flujo("runs", "approve", run_id, "--reason", "fine", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"flujo runs resume {run_id}" in ok.stdout
    resumed = run_flujo("runs", "resume", "--stale", "--json", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    [result] = json.loads(resumed.stdout)
    assert result["status"] == "succeeded"
    assert result["output"] == "box"


async def test_an_expired_human_pause_ends_the_run_when_answered(state_uri: str) -> None:
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.human(
        "check", expires_in_s=1e-9
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async("go")
        assert paused.status is RunStatus.PAUSED
        with pytest.raises(UserError, match=r"^run \w+: the pause at step 'check' expired"):
            await runner.reject_async(paused.run_id, reason="late", by="ann")
        ended = await runner.runtime.state.get_run(paused.run_id)
    assert ended is not None
    assert ended.status is RunStatus.FAILED
    assert ended.error is not None
    assert ended.error.startswith("the pause at step 'check' expired unanswered at ")


async def test_resuming_keeps_the_first_expiry_and_ends_an_expired_pause(state_uri: str) -> None:
    inner = Step.human("check", expires_in_s=3600)
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.branch(
        "route", lambda x: "a", {"a": inner}
    )
    async with Flujo(pipeline, config=_config(state_uri)) as runner:
        paused = await runner.run_async("go")
        first = await runner.runtime.state.get_run(paused.run_id)
        again = await runner.resume_async(paused.run_id)
        assert again.status is RunStatus.PAUSED
        second = await runner.runtime.state.get_run(paused.run_id)
    assert first is not None
    assert second is not None
    at = {s.path: s.result.output for s in first.inner_steps}["route/a/check"]["expires_at"]
    assert {s.path: s.result.output for s in second.inner_steps}["route/a/check"] == {
        "kind": "human",
        "expires_at": at,
    }
    gone = Step.from_callable(lambda x: x, name="first") >> Step.human("late", expires_in_s=1e-9)
    async with Flujo(gone, config=_config(state_uri)) as runner:
        paused = await runner.run_async("go")
        ended = await runner.resume_async(paused.run_id)
    assert ended.status is RunStatus.FAILED
    assert ended.error is not None
    assert "the pause at step 'late' expired unanswered" in ended.error


def test_expires_in_s_must_be_positive() -> None:
    from flujo.domain.errors import PipelineDefinitionError

    with pytest.raises(PipelineDefinitionError, match="expires_in_s must be > 0"):
        Step.human("check", expires_in_s=0)


EXPIRING = """
from flujo import Step

def first(x: str) -> str:
    return x

pipeline = Step.from_callable(first) >> Step.human("check", expires_in_s=1e-9)
"""


def test_cli_answering_an_expired_pause_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(EXPIRING)
    env = {"FLUJO_LOAD_PLUGINS": ""}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "box", "--json", cwd=tmp_path, env=env)
    run_id = json.loads(ran.stdout)["run_id"]
    late = run_flujo("runs", "approve", run_id, cwd=tmp_path, env=env)
    assert late.returncode == 2
    [line] = late.stderr.strip().splitlines()
    assert line.startswith(f"error: run {run_id}: the pause at step 'check' expired unanswered")
    assert line.endswith("; the run is now failed")
    listed = run_flujo("runs", "list", "--status", "failed", "--json", cwd=tmp_path, env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
