"""``tool_allowlist`` ``approve`` rules: a refund above 100 EUR waits for a person; the run pauses
with nothing raw at rest (PII in the tool's arguments included), the answer and who gave it go
into the audit trail, and the approved call runs once with the approved arguments. SQLite and
PostgreSQL; the model is scripted (no LLM runs here), everything else is real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gov_testkit import database_bytes, make_config

from flujo import Flujo, PipelineContext, RunStatus, Step, make_agent_async
from flujo.config import FlujoConfig
from flujo.state import open_state
from flujo.testing.cli import run_flujo
from flujo.testing.models import call_tool, scripted_model
from flujo.testing.pytest_plugin import SQLITE_STATE_FILE
from flujo_governance._scope import StepInfo
from flujo_governance.audit import fetch_decisions
from flujo_governance.settings import ToolsSettings
from flujo_governance.tools import ToolAllowlistPolicy

CONFIG = """\
[governance]
policies = ["pii", "tool_allowlist"]

[governance.pii]
inspect_tool_args = "allow"

[[governance.tools.rules]]
name = "big-refunds"
tool = "issue_refund"
effect = "approve"
when.above = { amount = 100 }
reason = "refunds above 100 EUR need a person"
"""

EMAIL = "jane.doe@example.com"


def _pipeline(turns: list[Any], paid: list[dict[str, Any]]) -> Any:
    def issue_refund(order: str, amount: int, notify: str) -> str:
        """Refund an order."""
        paid.append({"order": order, "amount": amount, "notify": notify})
        return f"refunded {amount}"

    agent = make_agent_async(scripted_model(*turns), "Refunds.", tools=[issue_refund])
    return Step.from_callable(lambda x: x, name="triage") >> Step("refund", agent)


async def _audit(config: FlujoConfig, run_id: str) -> list[dict[str, Any]]:
    state = await open_state(config)
    try:
        return await fetch_decisions(state, run_id=run_id)
    finally:
        await state.close()


async def test_a_big_refund_waits_approved_runs_once_and_is_audited(
    tmp_path: Path, flujo_state_uri: str
) -> None:
    paid: list[dict[str, Any]] = []
    turns = [call_tool("issue_refund", order="A-1", amount=150, notify=EMAIL), "done"]
    pipeline = _pipeline(turns, paid)
    config = make_config(tmp_path, CONFIG, state_uri=flujo_state_uri)
    async with Flujo(pipeline, config=config) as runner:
        paused = await runner.run_async(f"refund A-1 for {EMAIL}")
        assert paused.status is RunStatus.PAUSED, paused.error
        assert paid == []
        stored = await runner.runtime.state.get_run(paused.run_id)
        assert stored is not None
        assert EMAIL not in json.dumps(stored.to_dict())  # nothing raw at rest
        await runner.approve_async(paused.run_id, reason="customer is right", by="ann")
        done = await runner.resume_async(paused.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    # The approved arguments are the stored ones (PII scrubbed): the person approved what
    # they saw, and nothing raw was kept to run the call with.
    assert len(paid) == 1
    assert paid[0]["order"] == "A-1"
    assert paid[0]["amount"] == 150
    assert EMAIL not in paid[0]["notify"]
    if flujo_state_uri.startswith("sqlite"):
        assert EMAIL.encode() not in database_bytes(tmp_path, SQLITE_STATE_FILE)
    rows = await _audit(config, paused.run_id)
    # One row per decision: the policy's APPROVE when the call was made (the run paused on
    # it), then the person's answer. The policies are asked again when the approved call
    # runs (a denial then would still win), but the same APPROVE is not a second decision.
    calls = [(r["step"], r["stage"], r["tool"], r["decision"], r["rule"], r["actor"]) for r in rows]
    print(calls)
    assert calls.count(("refund", "tool_call", "issue_refund", "approve", "big-refunds", None)) == 1
    assert len(set(calls)) == len(calls), calls
    [answer] = [r for r in rows if r["stage"] == "approval"]
    assert answer["decision"] == "allow"
    assert answer["actor"] == "ann"
    assert answer["reason"] == "customer is right"
    assert answer["policy"] == "tool_allowlist"
    assert answer["step"] == "refund"


async def test_a_small_refund_runs_without_a_person(tmp_path: Path, flujo_state_uri: str) -> None:
    paid: list[dict[str, Any]] = []
    pipeline = _pipeline([call_tool("issue_refund", order="A", amount=50, notify="x"), "ok"], paid)
    async with Flujo(
        pipeline, config=make_config(tmp_path, CONFIG, state_uri=flujo_state_uri)
    ) as r:
        result = await r.run_async("refund A")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert [p["amount"] for p in paid] == [50]


async def test_a_rejection_is_audited_and_the_model_is_told(
    tmp_path: Path, flujo_state_uri: str
) -> None:
    paid: list[dict[str, Any]] = []
    turns = [call_tool("issue_refund", order="A", amount=900, notify="x"), "sorry"]
    pipeline = _pipeline(turns, paid)
    config = make_config(tmp_path, CONFIG, state_uri=flujo_state_uri)
    async with Flujo(pipeline, config=config) as runner:
        paused = await runner.run_async("refund A")
        await runner.reject_async(paused.run_id, reason="fraud suspected", by="bob")
        done = await runner.resume_async(paused.run_id)
    assert done.output == "sorry"
    assert paid == []
    [answer] = [r for r in await _audit(config, paused.run_id) if r["stage"] == "approval"]
    assert (answer["decision"], answer["actor"], answer["reason"]) == (
        "deny",
        "bob",
        "fraud suspected",
    )


async def test_human_step_answers_are_audited(tmp_path: Path, flujo_state_uri: str) -> None:
    config = make_config(tmp_path, CONFIG, state_uri=flujo_state_uri)
    pipeline = Step.from_callable(lambda x: x, name="first") >> Step.human("check")
    async with Flujo(pipeline, config=config) as runner:
        paused = await runner.run_async("go")
        await runner.approve_async(paused.run_id, reason=f"mail {EMAIL}", by="ann")
    [answer] = [r for r in await _audit(config, paused.run_id) if r["stage"] == "approval"]
    assert (answer["step"], answer["policy"], answer["decision"], answer["actor"]) == (
        "check",
        "human",
        "allow",
        "ann",
    )
    assert EMAIL not in answer["reason"]  # the reason is scrubbed like any stored text


PIPE = """
from flujo import Step, make_agent_async
from flujo.testing.models import call_tool, scripted_model

PAID = []

def issue_refund(order: str, amount: int, notify: str) -> str:
    \"\"\"Refund an order.\"\"\"
    PAID.append(amount)
    return f"refunded {amount}"

model = scripted_model(call_tool("issue_refund", order="A", amount=300, notify="x"), "done")
pipeline = Step("refund", make_agent_async(model, "Refunds.", tools=[issue_refund]))
"""


def test_cli_approve_and_audit(tmp_path: Path) -> None:
    (tmp_path / "flujo.toml").write_text(
        '[state]\nuri = "sqlite:///flujo.db"\n\n' + CONFIG, encoding="utf-8"
    )
    (tmp_path / "pipe.py").write_text(PIPE, encoding="utf-8")
    env = {"FLUJO_LOAD_PLUGINS": "flujo-governance"}
    ran = run_flujo("run", "pipe.py:pipeline", "--input", "refund", "--json", cwd=tmp_path, env=env)
    run_id = json.loads(ran.stdout)["run_id"]
    assert json.loads(ran.stdout)["status"] == "paused", ran.stdout
    bad = run_flujo("runs", "approve", run_id, "--input", "{}", cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert "takes no --input" in bad.stderr
    assert "Traceback" not in bad.stderr
    ok = run_flujo("runs", "approve", run_id, "--reason", "fine", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    audit = run_flujo("governance", "audit", "--run", run_id, "--json", cwd=tmp_path, env=env)
    rows = json.loads(audit.stdout)
    assert [(r["stage"], r["decision"], r["reason"]) for r in rows if r["actor"]] == [
        ("approval", "allow", "fine")
    ]
    table = run_flujo("governance", "audit", "--run", run_id, cwd=tmp_path, env=env)
    assert "BY" in table.stdout


def test_approve_rules_are_checked_after_the_lists() -> None:
    settings = ToolsSettings.model_validate(
        {
            "deny": ["issue_refund"],
            "rules": [{"tool": "issue_*", "effect": "approve", "when": {"above": {"amount": 1}}}],
        }
    )
    policy = ToolAllowlistPolicy(settings)
    step = StepInfo("s", ())
    assert not policy.verdict(PipelineContext(), "issue_refund", {"amount": 5}, step).allowed
    approve = ToolsSettings.model_validate(
        {"rules": [{"tool": "issue_*", "effect": "approve", "when": {"above": {"amount": 100}}}]}
    )
    policy = ToolAllowlistPolicy(approve)
    assert policy.verdict(PipelineContext(), "issue_refund", {"amount": 101}, step).approve
    assert not policy.verdict(PipelineContext(), "issue_refund", {"amount": 100}, step).approve
    # What cannot be compared is read the strict way for an approve rule.
    assert policy.verdict(PipelineContext(), "issue_refund", {"amount": "lots"}, step).approve
    assert policy.verdict(PipelineContext(), "issue_refund", {"amount": True}, step).approve
    allow = ToolsSettings.model_validate(
        {"rules": [{"tool": "issue_*", "when": {"above": {"amount": 100}}}]}
    )
    lenient = ToolAllowlistPolicy(allow)
    assert not lenient.verdict(PipelineContext(), "issue_refund", {"amount": "lots"}, step).allowed
