"""Every path by which text reaches the model, and every way a model can make code run, goes
through the policies: a tool's ``ModelRetry``, an output function's ``ModelRetry``, output
functions themselves (``output_type=[fn]``), tools named by the id a plugin registered them
under, and arguments whatever their case. Checked on what the scripted model and the loopback
OpenAI server received."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic_core
import pytest
from gov_testkit import database_bytes, make_config
from pydantic_ai import ModelRetry

from flujo import Flujo, Pipeline, RunStatus, Step, hookimpl, make_agent_async
from flujo.config import FlujoConfig
from flujo.plugins.hookspecs import Register
from flujo.testing.fake_openai import FakeOpenAIServer
from flujo.testing.models import call_tool, scripted_model

CARD = "4111 1111 1111 1111"
EMAIL = "ana@example.com"
RAW = [CARD, "4111111111111111", EMAIL]
PII = '[governance]\npolicies = ["pii"]\n'


def assert_clean(where: str, text: str) -> None:
    for secret in RAW:
        assert secret not in text, f"{secret!r} leaked into {where}"


def charge(customer: str) -> str:
    """Charge the customer's card on file."""
    raise ModelRetry(f"could not charge {CARD} for {EMAIL}")


async def test_a_tools_model_retry_is_scrubbed_before_the_model_sees_it(tmp_path: Path) -> None:
    model = scripted_model(call_tool("charge", customer="<EMAIL>"), "gave up")
    agent = make_agent_async(model, "You charge cards.", tools=[charge], retries=2)
    async with Flujo(Pipeline([Step("pay", agent)]), config=make_config(tmp_path, PII)) as runner:
        result = await runner.run_async("charge the customer")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert len(model.requests) == 2
    sent = pydantic_core.to_json(model.requests[1].messages).decode()
    assert_clean("the retry prompt sent to the model", sent)
    assert "could not charge <CREDIT_CARD> for <EMAIL>" in sent
    assert_clean("the database", database_bytes(tmp_path).decode("utf-8", "replace"))


async def test_a_tools_model_retry_over_http_reaches_the_server_scrubbed(
    tmp_path: Path, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.queue(call_tool("charge", customer="<EMAIL>"), "gave up")
    agent = make_agent_async("openai-chat:gpt-4o-mini", "You charge.", tools=[charge], retries=2)
    async with Flujo(Pipeline([Step("pay", agent)]), config=make_config(tmp_path, PII)) as runner:
        result = await runner.run_async("charge the customer")
    assert result.status is RunStatus.SUCCEEDED, result.error
    bodies = [json.dumps(r.body, ensure_ascii=False) for r in fake_openai.requests]
    assert len(bodies) == 2
    for body in bodies:
        assert_clean("the HTTP request to the model", body)
    assert "<CREDIT_CARD>" in bodies[1]


async def test_an_output_functions_model_retry_is_scrubbed(tmp_path: Path) -> None:
    calls: list[str] = []

    def file_refund(customer: str) -> str:
        """File the refund."""
        calls.append(customer)
        if len(calls) == 1:
            raise ModelRetry(f"card {CARD} of {EMAIL} is blocked, use another customer id")
        return f"refund filed for {customer}"

    model = scripted_model({"customer": "c-1"}, {"customer": "c-2"})
    agent = make_agent_async(model, "You refund.", [file_refund], retries=2)
    async with Flujo(
        Pipeline([Step("refund", agent)]), config=make_config(tmp_path, PII)
    ) as runner:
        result = await runner.run_async("refund")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.output == "refund filed for c-2"
    sent = pydantic_core.to_json(model.requests[1].messages).decode()
    assert_clean("the output function's retry prompt", sent)
    assert "<CREDIT_CARD>" in sent


def delete_customer(customer: str) -> str:
    """Delete a customer and all their data."""
    deleted.append(customer)
    return f"deleted {customer}"


deleted: list[str] = []


@pytest.mark.parametrize("on_deny", ["refuse", "fail"])
async def test_output_functions_go_through_the_tool_policies(tmp_path: Path, on_deny: str) -> None:
    deleted.clear()
    config = make_config(
        tmp_path,
        '[governance]\npolicies = ["tool_allowlist"]\n'
        f'[governance.tools]\ndeny = ["delete_customer"]\non_deny = "{on_deny}"\n',
    )
    model = scripted_model({"customer": "c-1"}, {"customer": "c-1"}, {"customer": "c-1"})
    agent = make_agent_async(model, "You manage customers.", [delete_customer], retries=1)
    async with Flujo(Pipeline([Step("admin", agent)]), config=config) as runner:
        result = await runner.run_async("delete c-1")
    assert deleted == []  # the output function never ran
    if on_deny == "fail":
        assert result.status is RunStatus.BLOCKED
        assert "delete_customer" in (result.error or "")
    else:
        # The model was told, like for a refused tool, and ran out of retries.
        assert result.status is RunStatus.FAILED
        told = pydantic_core.to_json(model.requests[1].messages).decode()
        assert "Tool call refused by policy 'tool_allowlist'" in told


def lookup(table: str) -> str:
    """Look rows up in a table."""
    looked_up.append(table)
    return f"rows of {table}"


looked_up: list[str] = []


class ToolPlugin:
    """Another plugin registering ``lookup`` under the id ``acme.db.lookup``."""

    @hookimpl
    def flujo_register_tools(self, register: Register) -> None:
        register("acme.db.lookup", lambda config: lookup)


async def _lookup_run(config: FlujoConfig, table: str) -> Any:
    looked_up.clear()
    model = scripted_model(call_tool("acme__db__lookup", table=table), "done")
    agent = make_agent_async(model, "You query.", tools=["acme.db.lookup"], config=config)
    async with Flujo(Pipeline([Step("query", agent)]), config=config) as runner:
        result = await runner.run_async("query")
    return result, model


@pytest.mark.parametrize(
    ("tools", "runs"),
    [
        ('deny = ["acme.db.lookup"]', False),  # the registered id
        ('deny = ["acme.db.*"]', False),
        # A deny written with the function's name or the model's form of the id still
        # denies (fail closed); an allow must name the id (the function's name is not it).
        ('deny = ["lookup"]', False),
        ('deny = ["acme__db__*"]', False),
        ('allow = ["acme.db.*"]', True),
        ('allow = ["lookup"]', False),
        ('allow = ["acme__db__lookup"]', False),
        ('allow = ["other"]', False),
    ],
)
async def test_allows_match_the_id_denies_also_its_aliases(
    tmp_path: Path, tools: str, runs: bool
) -> None:
    config = make_config(
        tmp_path,
        f'[governance]\npolicies = ["tool_allowlist"]\n[governance.tools]\n{tools}\n',
        ToolPlugin(),
    )
    result, model = await _lookup_run(config, "orders")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert looked_up == (["orders"] if runs else [])
    if not runs:
        assert "refused" in str(model.requests[1].tool_returns["acme__db__lookup"])


RULE = """
[governance]
policies = ["tool_allowlist"]
[[governance.tools.rules]]
tool = "acme.db.lookup"
effect = "deny"
when.args = {{ table = "prod_*" }}
{extra}
"""


@pytest.mark.parametrize(
    ("table", "extra", "runs"),
    [
        ("prod_users", "", False),
        ("PROD_users", "", False),  # case does not get around a rule
        ("Prod_Users", "", False),
        ("staging_users", "", True),
        ("PROD_users", "when.case_sensitive = true", True),  # unless asked
        ("prod_users", "when.case_sensitive = true", False),
    ],
)
async def test_argument_globs_ignore_case_unless_asked(
    tmp_path: Path, table: str, extra: str, runs: bool
) -> None:
    config = make_config(tmp_path, RULE.format(extra=extra), ToolPlugin())
    result, _ = await _lookup_run(config, table)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert looked_up == ([table] if runs else [])


async def test_a_deny_rule_written_with_the_functions_name_still_denies(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        RULE.replace('tool = "acme.db.lookup"', 'tool = "lookup"').format(extra=""),
        ToolPlugin(),
    )
    result, _ = await _lookup_run(config, "prod_users")
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert looked_up == []
