"""Real runs for the UI tests: pipelines written to a file (so a run records where its
pipeline is, as ``flujo run`` does), run by the real runner on SQLite or PostgreSQL, and a
test plugin whose run-view section carries hostile text, a trace id and scores."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flujo import Flujo, FlujoConfig
from flujo.config import load_config
from flujo.plugin import (
    PolicyDecided,
    PolicyDecision,
    RunRecord,
    Runtime,
    RunViewSection,
    StateBackend,
    ToolApprovalRequired,
    ToolCallRefused,
    hookimpl,
    load_target,
)
from flujo.plugins.manager import PluginManager

XSS = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'

PIPES = """
from pydantic import BaseModel
from flujo import Step, make_agent_async
from flujo.testing.models import call_tool, scripted_model

XSS = {xss!r}


class Refund(BaseModel):
    amount: int
    note: str = ""


def triage(text: str) -> str:
    return text


def refund(text: str) -> str:
    return "refund for " + text + " " + XSS


def other(text: str) -> str:
    return "no refund"


def route(text: str) -> str:
    return "billing" if "refund" in text else "other"


def pay(r: Refund) -> str:
    return f"paid {{r.amount}}"


def explode(text: str) -> str:
    raise ValueError("boom " + XSS)


branchy = Step.from_callable(triage) >> Step.branch(
    "route", route, {{"billing": Step.from_callable(refund), "other": Step.from_callable(other)}}
)
approval = Step.from_callable(triage, name="ask") >> Step.human(
    "approve", schema=Refund, prompt="Refund this customer?"
) >> Step.from_callable(pay)
failing = Step.from_callable(explode)


async def refund_money(amount: int) -> str:
    '''Send money back to the customer.'''
    return f"refunded {{amount}}"


def tooly() -> Step:
    # A fresh script per load: the model calls the tool, then answers.
    model = scripted_model(call_tool("refund_money", amount=500), "I could not refund; escalated")
    return Step("agent", make_agent_async(model, "Help.", tools=[refund_money]))
"""


class NoRefunds:
    """A test policy: every call of ``refund_money`` is refused (the step goes on)."""

    name = "no_refunds"

    def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(self, context: Any, tool_name: str, args: dict[str, Any]) -> Any:
        if tool_name == "refund_money":
            raise ToolCallRefused(self.name, f"refunds of {args.get('amount')} need a person")
        return PolicyDecision.ALLOW


class AskForRefunds:
    """A test policy: every call of ``refund_money`` waits for a person (the run pauses)."""

    name = "ask_for_refunds"

    def __init__(self, expires_in_s: float | None = None) -> None:
        self.expires_in_s = expires_in_s

    def inspect_input(self, context: Any, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(self, context: Any, tool_name: str, args: dict[str, Any]) -> Any:
        if tool_name == "refund_money":
            raise ToolApprovalRequired(
                self.name,
                f"refunds of {args.get('amount')} need a person " + XSS,
                expires_in_s=self.expires_in_s,
            )
        return PolicyDecision.ALLOW


@dataclass
class ViewPlugin:
    """A plugin showing, for every run, a section as flujo-evals/governance/otel would."""

    calls: list[str] = field(default_factory=list)

    @hookimpl
    def flujo_run_view(self, run: RunRecord, state: StateBackend) -> RunViewSection | None:
        self.calls.append(run.run_id)
        return RunViewSection(
            "Checks " + XSS,
            fields={"trace id": "abc123" + run.run_id[:8], "note": XSS},
            columns=("step", "evaluator", "score", "reasoning"),
            rows=[("route", "judge", 0.75, "reasoning " + XSS)],
        )


@dataclass
class DecisionsPlugin:
    """A plugin showing the policy decisions of each run, as flujo-governance's audit does
    (kept in memory here: the test serves the app in this process)."""

    decisions: dict[str, list[PolicyDecided]] = field(default_factory=dict)

    @hookimpl
    def flujo_policy_decided(self, event: PolicyDecided, runtime: Runtime) -> None:
        self.decisions.setdefault(event.run_id, []).append(event)

    @hookimpl
    def flujo_run_view(self, run: RunRecord) -> RunViewSection | None:
        found = self.decisions.get(run.run_id)
        if not found:
            return None
        return RunViewSection(
            "Policy decisions",
            columns=("step", "policy", "where", "tool", "decision", "reason"),
            rows=[
                (e.step_name, e.policy, e.where, e.tool_name, e.decision.value, e.reason)
                for e in found
            ],
        )


def write_pipes(folder: Path) -> Path:
    path = folder / "pipes.py"
    path.write_text(PIPES.format(xss=XSS))
    return path


def make_config(
    folder: Path, uri: str, plugin: object | None = None, toml: str = "", *more: object
) -> FlujoConfig:
    (folder / "flujo.toml").write_text(f'[state]\nuri = "{uri}"\n{toml}')
    manager = PluginManager(strict=True)
    from flujo_ui import plugin as ui_plugin

    manager.register(ui_plugin, "flujo-ui")
    if plugin is not None:
        manager.register(plugin, "view-test")
    for i, other in enumerate(more):
        manager.register(other, f"view-test-{i + 2}")
    return load_config(folder / "flujo.toml", plugin_manager=manager, environ={})


async def run(config: FlujoConfig, pipes: Path, name: str, data: Any, *policies: Any) -> str:
    ref = f"{pipes}:{name}"
    runner = Flujo(load_target(ref), config=config, pipeline_ref=ref, policies=policies)
    async with runner:
        result = await runner.run_async(data)
    return result.run_id


async def populate(config: FlujoConfig, pipes: Path) -> dict[str, str]:
    """One run of each kind: a branch, a paused human step, a failure, a refused tool call."""
    ids = {
        "branch": await run(config, pipes, "branchy", "refund please"),
        "paused": await run(config, pipes, "approval", "order A-1"),
        "failed": await run(config, pipes, "failing", "x"),
        "refused": await run(config, pipes, "tooly", "refund 500", NoRefunds()),
    }
    time.sleep(0.01)
    return ids
