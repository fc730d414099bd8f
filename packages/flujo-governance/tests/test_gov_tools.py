"""tool_allowlist in real runs: deny lists, conditional allow rules on context, step tags and
real arguments, refuse (the step goes on) versus fail (the step is blocked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gov_testkit import make_config

from flujo import Flujo, Pipeline, PipelineContext, RunStatus, Step, make_agent_async
from flujo.state import open_state
from flujo.testing.models import call_tool, scripted_model
from flujo_governance.audit import fetch_decisions
from flujo_governance.settings import ToolsSettings
from flujo_governance.tools import ToolAllowlistPolicy

CONFIG = """\
[governance]
policies = ["tool_allowlist"]
audit_allow = true

[governance.tools]
deny = ["rm_*"]
on_deny = "refuse"

[[governance.tools.rules]]
name = "drop-tmp-tables-in-migrations"
tool = "drop_table"
when.context = { role = "admin" }
when.tags = ["migration"]
when.args = { table = "tmp_*" }
on_deny = "fail"
"""


class Ctx(PipelineContext):
    role: str = "user"


class Database:
    def __init__(self) -> None:
        self.dropped: list[str] = []
        self.removed: list[str] = []

    async def drop_table(self, table: str) -> str:
        """Drop a table."""
        self.dropped.append(table)
        return f"dropped {table}"

    async def rm_rf(self, path: str) -> str:
        """Delete a folder."""
        self.removed.append(path)
        return "gone"


async def run_once(
    tmp_path: Path, *turns: Any, role: str, tags: tuple[str, ...]
) -> tuple[Any, Database, Any]:
    db = Database()
    model = scripted_model(*turns)
    agent = make_agent_async(model, "You run migrations.", tools=[db.drop_table, db.rm_rf])
    config = make_config(tmp_path, CONFIG)
    steps = Pipeline([Step("migrate", agent, tags=tags)])
    async with Flujo(steps, config=config, context_model=Ctx) as r:
        result = await r.run_async("clean up", context={"role": role})
    return result, db, model


@pytest.mark.parametrize(
    ("role", "tags", "table", "allowed"),
    [
        ("admin", ("migration",), "tmp_orders", True),
        ("admin", ("migration",), "orders", False),  # argument does not match tmp_*
        ("user", ("migration",), "tmp_orders", False),  # context.role is not admin
        ("admin", (), "tmp_orders", False),  # the step is not tagged migration
    ],
)
async def test_conditional_allow(
    tmp_path: Path, role: str, tags: tuple[str, ...], table: str, allowed: bool
) -> None:
    result, db, _ = await run_once(
        tmp_path, call_tool("drop_table", table=table), "done", role=role, tags=tags
    )
    if allowed:
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert db.dropped == [table]
    else:
        # on_deny = "fail" for this rule: the step is blocked, the tool never runs.
        assert result.status is RunStatus.BLOCKED
        assert db.dropped == []
        assert "tool_allowlist" in (result.error or "")


async def test_refuse_lets_the_step_go_on(tmp_path: Path) -> None:
    result, db, model = await run_once(
        tmp_path,
        call_tool("rm_rf", path="/"),
        "I could not delete it.",
        role="admin",
        tags=("migration",),
    )
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == "I could not delete it."
    assert db.removed == []
    refusal = model.requests[1].tool_returns["rm_rf"]
    assert refusal == "Tool call refused by policy 'tool_allowlist': tool 'rm_rf' is denied"

    state = await open_state(make_config(tmp_path, CONFIG))
    try:
        rows = await fetch_decisions(state, run_id=result.run_id)
    finally:
        await state.close()
    assert rows[0]["stage"] == "input"
    assert rows[0]["decision"] == "allow"
    assert [(r["tool"], r["decision"], r["rule"]) for r in rows[1:]] == [
        ("rm_rf", "deny", "deny:rm_*")
    ]


async def test_allowed_rule_is_audited_when_audit_allow(tmp_path: Path) -> None:
    result, _, _ = await run_once(
        tmp_path,
        call_tool("drop_table", table="tmp_x"),
        "ok",
        role="admin",
        tags=("migration",),
    )
    state = await open_state(make_config(tmp_path, CONFIG))
    try:
        rows = await fetch_decisions(state, run_id=result.run_id)
    finally:
        await state.close()
    calls = [r for r in rows if r["stage"] == "tool_call"]
    assert [(r["step"], r["tool"], r["decision"], r["rule"]) for r in calls] == [
        ("migrate", "drop_table", "allow", "drop-tmp-tables-in-migrations")
    ]


def verdict(settings: ToolsSettings, tool: str, args: dict[str, Any] | None = None) -> bool:
    from flujo_governance._scope import StepInfo

    policy = ToolAllowlistPolicy(settings)
    return policy.verdict(Ctx(), tool, args or {}, StepInfo("s", ())).allowed


def test_lists_and_globs() -> None:
    assert verdict(ToolsSettings(), "anything")
    only = ToolsSettings(allow=["search", "get_*"], deny=["get_secret"])
    assert verdict(only, "search")
    assert verdict(only, "get_user")
    assert not verdict(only, "get_secret")  # deny wins
    assert not verdict(only, "send_mail")  # an allow list means default deny


def test_argument_lists_must_all_match() -> None:
    settings = ToolsSettings.model_validate(
        {"rules": [{"tool": "drop_*", "when": {"args": {"tables": ["tmp_*", "scratch_*"]}}}]}
    )
    assert verdict(settings, "drop_tables", {"tables": ["tmp_a", "scratch_b"]})
    assert not verdict(settings, "drop_tables", {"tables": ["tmp_a", "users"]})
    assert not verdict(settings, "drop_tables", {})


def test_deny_rule_and_step_override() -> None:
    from flujo_governance._scope import StepInfo

    settings = ToolsSettings.model_validate(
        {
            "allow": ["search"],
            "rules": [{"tool": "search", "effect": "deny", "when": {"context": {"role": "guest"}}}],
            "overrides": [{"tags": ["ops"], "allow": ["search", "restart_*"]}],
        }
    )
    policy = ToolAllowlistPolicy(settings)
    assert not policy.verdict(Ctx(role="guest"), "search", {}, StepInfo("s", ())).allowed
    assert policy.verdict(Ctx(), "search", {}, StepInfo("s", ())).allowed
    assert not policy.verdict(Ctx(), "restart_db", {}, StepInfo("s", ())).allowed
    assert policy.verdict(Ctx(), "restart_db", {}, StepInfo("s", ("ops",))).allowed
