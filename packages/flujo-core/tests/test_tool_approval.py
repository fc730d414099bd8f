"""A policy can want a person to approve a tool call: the run pauses (no worker, no lease), a
person approves or rejects it, and any worker resumes the agent from its stored message
history with the answer as pydantic-ai's deferred tool result. The approval binds to the exact
call (its id and the fingerprint of its arguments). SQLite and PostgreSQL.

The model is a scripted pydantic-ai ``FunctionModel`` (no LLM can run here); every other part
(state backends, the runner, pydantic-ai's deferred-tool machinery) is real."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flujo import Flujo, FlujoConfig, PolicyDecision, Step, make_agent_async
from flujo.config import StateSettings
from flujo.domain.approval import answer_for, call_fingerprint
from flujo.domain.context import PipelineContext
from flujo.domain.errors import ToolApprovalRequired, UserError
from flujo.domain.models import RunStatus
from flujo.plugins.manager import PluginManager
from flujo.testing.models import ScriptedModel, call_tool, scripted_model


class BigRefunds:
    """Wants a person for refunds above 100; allows everything else."""

    name = "big_refunds"

    def __init__(self, *, expires_in_s: float | None = None, plain: bool = False) -> None:
        self.expires_in_s = expires_in_s
        self.plain = plain

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        if tool_name == "issue_refund" and args.get("amount", 0) > 100:
            if self.plain:
                return PolicyDecision.APPROVE
            raise ToolApprovalRequired(
                self.name, "refunds above 100 EUR need a person", expires_in_s=self.expires_in_s
            )
        return PolicyDecision.ALLOW


def _config(uri: str) -> FlujoConfig:
    return FlujoConfig(state=StateSettings(uri=uri), plugin_manager=PluginManager())


def _pipeline(model: ScriptedModel, paid: list[dict[str, Any]], *, branch: bool = False) -> Any:
    def issue_refund(order: str, amount: int) -> str:
        paid.append({"order": order, "amount": amount})
        return f"refunded {amount} on {order}"

    agent = make_agent_async(model, "You handle refunds.", tools=[issue_refund])
    refund = Step("refund", agent)
    if not branch:
        return Step.from_callable(lambda x: x, name="triage") >> refund
    return Step.branch("route", lambda x: "billing", {"billing": refund})


async def test_pause_approve_resume_runs_the_tool_once_with_the_approved_args(
    state_uri: str,
) -> None:
    paid: list[dict[str, Any]] = []
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "refund done")
    pipeline = _pipeline(model, paid)
    async with Flujo(pipeline, config=_config(state_uri), policies=[BigRefunds()]) as runner:
        paused = await runner.run_async("refund A-1, 150 EUR")
        assert paused.status is RunStatus.PAUSED, paused.error
        assert paused.error is not None
        assert "waiting for a person to approve tool call 'issue_refund'" in paused.error
        assert paid == []
        listed = await runner.runtime.state.list_runs(status=RunStatus.PAUSED)
        assert [r.run_id for r in listed] == [paused.run_id]
        stored = await runner.runtime.state.get_run(paused.run_id)
        assert stored is not None
        [lease] = await runner.runtime.state.fetch_all(
            "SELECT lease_owner FROM workflow_state WHERE run_id = :r", {"r": paused.run_id}
        )
        assert lease["lease_owner"] is None  # a paused run holds no lease
        record = stored.steps[-1].output
        assert record["calls"][0]["args"] == {"order": "A-1", "amount": 150}
        answered = await runner.approve_async(paused.run_id, reason="ok", by="ann")
        assert answered.status is RunStatus.INTERRUPTED
    # Any worker resumes: the model is not asked again for the call, the tool runs once.
    async with Flujo(pipeline, config=_config(state_uri), policies=[BigRefunds()]) as other:
        done = await other.resume_async(paused.run_id)
        final = await other.runtime.state.get_run(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == "refund done"
    assert paid == [{"order": "A-1", "amount": 150}]
    assert len(model.requests) == 2  # the call, then the answer after the tool's result
    assert model.requests[1].tool_returns == {"issue_refund": "refunded 150 on A-1"}
    assert final is not None
    audit = {s.path: s.result.output for s in final.inner_steps}["refund@approval"]
    assert audit["decision"] == "approved"
    assert audit["by"] == "ann"
    assert audit["reason"] == "ok"
    assert audit["calls"][0]["fingerprint"] == call_fingerprint(
        "issue_refund", {"order": "A-1", "amount": 150}
    )


async def test_reject_tells_the_model_and_the_tool_never_runs(state_uri: str) -> None:
    paid: list[dict[str, Any]] = []
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=500), "no refund then")
    pipeline = _pipeline(model, paid, branch=True)
    async with Flujo(
        pipeline, config=_config(state_uri), policies=[BigRefunds(plain=True)]
    ) as runner:
        paused = await runner.run_async("refund A-1")
        assert paused.status is RunStatus.PAUSED, paused.error
        rejected = await runner.reject_async(paused.run_id, reason="too much", by="bob")
        assert rejected.status is RunStatus.INTERRUPTED
        assert rejected.error == (
            "tool call rejected at step 'route/billing/refund' by bob: too much; resume it"
        )
        done = await runner.resume_async(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == "no refund then"
    assert paid == []
    told = model.requests[-1].tool_returns["issue_refund"]
    assert told == "A person refused this tool call: too much"


async def test_an_approval_never_approves_another_call(state_uri: str) -> None:
    # After the approved call ran, the model asks for a second, bigger refund: it pauses
    # again, and the first approval does not let it through.
    paid: list[dict[str, Any]] = []
    model = scripted_model(
        call_tool("issue_refund", order="A-1", amount=150),
        call_tool("issue_refund", order="A-1", amount=900),
        "both done",
    )
    pipeline = _pipeline(model, paid)
    async with Flujo(pipeline, config=_config(state_uri), policies=[BigRefunds()]) as runner:
        first = await runner.run_async("refund A-1")
        await runner.approve_async(first.run_id, by="ann")
        second = await runner.resume_async(first.run_id)
        assert second.status is RunStatus.PAUSED, second.error
        assert paid == [{"order": "A-1", "amount": 150}]
        # Resumed without an answer: paused again at once, the model is not asked again.
        asked = len(model.requests)
        again = await runner.resume_async(first.run_id)
        assert again.status is RunStatus.PAUSED
        assert len(model.requests) == asked
        await runner.approve_async(first.run_id, by="ann")
        done = await runner.resume_async(first.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert paid == [{"order": "A-1", "amount": 150}, {"order": "A-1", "amount": 900}]


def test_an_answer_binds_to_the_call_id_and_its_arguments() -> None:
    pending = {
        "calls": [{"tool": "issue_refund", "tool_call_id": "c1", "args": {"amount": 150}}],
    }
    fp = call_fingerprint("issue_refund", {"amount": 150})
    ok = {"decision": "approved", "calls": [{"tool_call_id": "c1", "fingerprint": fp}]}
    assert answer_for(pending, ok) is ok
    other_args = {**pending, "calls": [{**pending["calls"][0], "args": {"amount": 151}}]}
    assert answer_for(other_args, ok) is None
    other_id = {**pending, "calls": [{**pending["calls"][0], "tool_call_id": "c2"}]}
    assert answer_for(other_id, ok) is None
    assert answer_for(pending, {**ok, "decision": "maybe"}) is None
    # Key order does not matter; the tool's name does.
    assert call_fingerprint("t", {"a": 1, "b": 2}) == call_fingerprint("t", {"b": 2, "a": 1})
    assert call_fingerprint("t", {"a": 1}) != call_fingerprint("u", {"a": 1})


async def test_an_expired_pause_ends_the_run_when_answered(state_uri: str) -> None:
    paid: list[dict[str, Any]] = []
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "done")
    pipeline = _pipeline(model, paid)
    policy = BigRefunds(expires_in_s=1e-9)  # expired by the time anyone answers
    async with Flujo(pipeline, config=_config(state_uri), policies=[policy]) as runner:
        paused = await runner.run_async("refund A-1")
        assert paused.status is RunStatus.PAUSED
        assert paused.error is not None
        assert ", expires " in paused.error
        with pytest.raises(UserError, match=r"expired unanswered at .*; the run is now failed"):
            await runner.approve_async(paused.run_id, by="ann")
        ended = await runner.runtime.state.get_run(paused.run_id)
    assert ended is not None
    assert ended.status is RunStatus.FAILED
    assert ended.error is not None
    assert "expired unanswered" in ended.error
    assert paid == []


async def test_a_tool_approval_takes_no_input(state_uri: str) -> None:
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "done")
    pipeline = _pipeline(model, [])
    async with Flujo(pipeline, config=_config(state_uri), policies=[BigRefunds()]) as runner:
        paused = await runner.run_async("refund A-1")
        with pytest.raises(UserError, match="takes no --input"):
            await runner.approve_async(paused.run_id, {"amount": 1})


class ApproveEverything:
    """Answers APPROVE where a person cannot be asked: must never let data through."""

    name = "approve_everything"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.APPROVE, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        return PolicyDecision.ALLOW


async def test_approve_on_an_input_blocks(state_uri: str) -> None:
    calls: list[str] = []
    pipeline = Step.from_callable(lambda x: calls.append(x) or x, name="only")
    async with Flujo(pipeline, config=_config(state_uri), policies=[ApproveEverything()]) as runner:
        result = await runner.run_async("data")
    assert result.status is RunStatus.BLOCKED
    assert calls == []


async def test_a_later_denial_wins_over_an_approval(state_uri: str) -> None:
    class DenyRefunds:
        name = "deny_refunds"

        def inspect_input(self, context: PipelineContext, data: Any) -> Any:
            return PolicyDecision.ALLOW, data

        def inspect_tool_call(self, context: PipelineContext, tool_name: str, args: Any) -> Any:
            return PolicyDecision.DENY

    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "done")
    paid: list[dict[str, Any]] = []
    pipeline = _pipeline(model, paid)
    async with Flujo(
        pipeline, config=_config(state_uri), policies=[BigRefunds(), DenyRefunds()]
    ) as runner:
        result = await runner.run_async("refund A-1")
    assert result.status is RunStatus.BLOCKED
    assert paid == []


async def test_the_stored_record_is_json(state_uri: str) -> None:
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "done")
    pipeline = _pipeline(model, [])
    async with Flujo(pipeline, config=_config(state_uri), policies=[BigRefunds()]) as runner:
        paused = await runner.run_async("refund A-1")
        stored = await runner.runtime.state.get_run(paused.run_id)
    assert stored is not None
    record = stored.steps[-1].output
    json.dumps(record)
    assert record["kind"] == "tool_approval"
    assert record["policies"] == ["big_refunds"]


async def test_resuming_an_expired_unanswered_tool_pause_fails_the_run(state_uri: str) -> None:
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "done")
    paid: list[dict[str, Any]] = []
    pipeline = _pipeline(model, paid)
    policy = BigRefunds(expires_in_s=1e-9)
    async with Flujo(pipeline, config=_config(state_uri), policies=[policy]) as runner:
        paused = await runner.run_async("refund A-1")
        ended = await runner.resume_async(paused.run_id)
    assert ended.status is RunStatus.FAILED
    assert ended.error is not None
    assert "expired unanswered" in ended.error
    assert paid == []
    assert len(model.requests) == 1


async def test_a_paused_run_is_not_restored_until_it_finishes(state_uri: str) -> None:
    # restore() may forget what it restores with (pii's pseudonym vault): a paused run goes on.
    restored: list[Any] = []

    class Restoring(BigRefunds):
        def restore(self, context: PipelineContext, output: Any) -> Any:
            restored.append(output)
            return output

    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "done")
    pipeline = _pipeline(model, [])
    async with Flujo(pipeline, config=_config(state_uri), policies=[Restoring()]) as runner:
        paused = await runner.run_async("refund A-1")
        assert paused.status is RunStatus.PAUSED
        assert restored == []
        await runner.approve_async(paused.run_id, by="ann")
        done = await runner.resume_async(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert restored == ["done"]


@pytest.mark.parametrize("plain", [False, True], ids=["raises", "returns"])
async def test_one_decision_event_per_decision_around_an_approved_call(
    state_uri: str, plain: bool
) -> None:
    """The policies' decisions on a call are reported when it pauses the run, then the person's
    answer (``where="approval"``). When the approved call runs, the policies are asked again (a
    denial would still win), but the same ALLOW and APPROVE are not reported (nor audited) a
    second time."""
    from flujo import hookimpl
    from flujo.application.runtime import Runtime
    from flujo.domain.events import PolicyDecided

    seen: list[tuple[str, str, str | None, PolicyDecision]] = []

    class Recorder:
        @hookimpl
        def flujo_policy_decided(self, event: PolicyDecided, runtime: Runtime) -> None:
            if event.where in ("tool_call", "approval"):
                seen.append((event.policy, event.where, event.tool_name, event.decision))

    class AllowAll:
        name = "allow_all"

        def inspect_tool_call(self, context: PipelineContext, tool_name: str, args: Any) -> Any:
            return PolicyDecision.ALLOW

    paid: list[dict[str, Any]] = []
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "refund done")
    config = _config(state_uri)
    assert config.plugin_manager is not None
    config.plugin_manager.register(Recorder(), "recorder")
    policies = [AllowAll(), BigRefunds(plain=plain)]
    async with Flujo(_pipeline(model, paid), config=config, policies=policies) as runner:
        paused = await runner.run_async("refund A-1, 150 EUR")
        assert paused.status is RunStatus.PAUSED, paused.error
        await runner.approve_async(paused.run_id, reason="ok", by="ann")
        done = await runner.resume_async(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert paid == [{"order": "A-1", "amount": 150}]
    assert seen == [
        ("allow_all", "tool_call", "issue_refund", PolicyDecision.ALLOW),
        ("big_refunds", "tool_call", "issue_refund", PolicyDecision.APPROVE),
        ("big_refunds", "approval", "issue_refund", PolicyDecision.ALLOW),
    ]


async def test_a_denial_when_the_approved_call_runs_still_wins_and_is_reported(
    state_uri: str,
) -> None:
    """The policies are asked again before an approved call runs: one that now denies it
    stops the step, and that new decision is reported (only repeats are left out)."""
    from flujo import hookimpl
    from flujo.application.runtime import Runtime
    from flujo.domain.events import PolicyDecided

    seen: list[tuple[str, str, PolicyDecision]] = []

    class Recorder:
        @hookimpl
        def flujo_policy_decided(self, event: PolicyDecided, runtime: Runtime) -> None:
            if event.where in ("tool_call", "approval"):
                seen.append((event.policy, event.where, event.decision))

    class DenyOnSecondLook:
        name = "second_look"
        asked = 0

        def inspect_tool_call(self, context: PipelineContext, tool_name: str, args: Any) -> Any:
            self.asked += 1
            return PolicyDecision.ALLOW if self.asked == 1 else PolicyDecision.DENY

    paid: list[dict[str, Any]] = []
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "refund done")
    config = _config(state_uri)
    assert config.plugin_manager is not None
    config.plugin_manager.register(Recorder(), "recorder")
    policies = [DenyOnSecondLook(), BigRefunds()]
    async with Flujo(_pipeline(model, paid), config=config, policies=policies) as runner:
        paused = await runner.run_async("refund A-1, 150 EUR")
        await runner.approve_async(paused.run_id, reason="ok", by="ann")
        done = await runner.resume_async(paused.run_id)
    assert done.status is RunStatus.BLOCKED, done.error
    assert paid == []
    assert seen == [
        ("second_look", "tool_call", PolicyDecision.ALLOW),
        ("big_refunds", "tool_call", PolicyDecision.APPROVE),
        ("big_refunds", "approval", PolicyDecision.ALLOW),
        ("second_look", "tool_call", PolicyDecision.DENY),
    ]


REFUND_PIPE = """
from flujo import Step, make_agent_async
from flujo.testing.models import call_tool, scripted_model

def issue_refund(order: str, amount: int) -> str:
    return f"refunded {amount} on {order}"

def pipeline():
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "done")
    return Step("refund", make_agent_async(model, "Refunds.", tools=[issue_refund]))
"""


def test_cli_reject_of_a_tool_call_says_how_to_continue(tmp_path: Any) -> None:
    """``flujo runs reject`` on a tool call leaves the run ``interrupted`` (the model is told
    when it resumes) and says how to continue it, as ``flujo runs approve`` does."""
    import asyncio

    from flujo.plugin import load_target
    from flujo.testing.cli import run_flujo

    (tmp_path / "pipe.py").write_text(REFUND_PIPE)
    (tmp_path / "flujo.toml").write_text('[state]\nuri = "sqlite:///runs.db"\n')
    ref = f"{tmp_path / 'pipe.py'}:pipeline"
    config = _config(f"sqlite:///{tmp_path / 'runs.db'}")

    async def pause() -> str:
        runner = Flujo(load_target(ref), config=config, policies=[BigRefunds()], pipeline_ref=ref)
        async with runner:
            paused = await runner.run_async("refund A-1")
        assert paused.status is RunStatus.PAUSED, paused.error
        return paused.run_id

    run_id = asyncio.run(pause())
    env = {"FLUJO_LOAD_PLUGINS": ""}
    rejected = run_flujo("runs", "reject", run_id, "--reason", "no", cwd=tmp_path, env=env)
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.splitlines() == [
        f"run {run_id}: interrupted: tool call rejected at step 'refund' by "
        f"{rejected.stdout.split(' by ')[1].split(':')[0]}: no; resume it",
        f"continue it with `flujo runs resume {run_id}` (or any --stale worker)",
    ]


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "rejected"])
async def test_a_runner_without_the_policy_still_resumes_from_the_answer(
    state_uri: str, approve: bool
) -> None:
    """The answer is in the run, not in the resuming runner's policies: a worker whose
    configuration lacks the policy that paused the call (changed since, another process)
    resumes the agent from its stored history with the answer. A rejected call never runs and
    the model is not asked again from the start (it would make the call anew, unguarded)."""
    paid: list[dict[str, Any]] = []
    model = scripted_model(call_tool("issue_refund", order="A-1", amount=150), "refund handled")
    pipeline = _pipeline(model, paid)
    async with Flujo(pipeline, config=_config(state_uri), policies=[BigRefunds()]) as runner:
        paused = await runner.run_async("refund A-1, 150 EUR")
        assert paused.status is RunStatus.PAUSED, paused.error
        if approve:
            await runner.approve_async(paused.run_id, reason="ok", by="ann")
        else:
            await runner.reject_async(paused.run_id, reason="too much", by="bob")
    async with Flujo(pipeline, config=_config(state_uri)) as unguarded:
        done = await unguarded.resume_async(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == "refund handled"
    assert len(model.requests) == 2  # the call, then the answer: never the prompt again
    told = "refunded 150 on A-1" if approve else "A person refused this tool call: too much"
    assert model.requests[1].tool_returns == {"issue_refund": told}
    assert paid == ([{"order": "A-1", "amount": 150}] if approve else [])
