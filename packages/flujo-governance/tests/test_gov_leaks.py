"""A pipeline run with ``pii`` and ``tool_allowlist`` leaks nothing: not to the model (scripted,
and over real HTTP to the fake OpenAI server), not to the database file (WAL included), not
to the logs, not to another plugin's observers; and every decision is audited."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pydantic_core
import pytest
from gov_testkit import database_bytes, make_config
from pydantic_ai import RunContext

from flujo import Flujo, Pipeline, PipelineContext, RunStatus, Step, hookimpl, make_agent_async
from flujo.domain.events import RunFinalized, StepCompleted
from flujo.state import open_state
from flujo.testing.fake_openai import FakeOpenAIServer
from flujo.testing.models import call_tool, scripted_model
from flujo_governance.audit import fetch_decisions

EMAIL = "ana.lopez@example.com"
CARD = "4111 1111 1111 1111"
PHONE = "+1 415 555 2671"
SSN = "536-22-1234"
AWS = "AKIAIOSFODNN7EXAMPLE"
IBAN = "DE89 3704 0044 0532 0130 00"
IP = "203.0.113.42"
SECRETS = [EMAIL, CARD, PHONE, SSN, AWS, IBAN, IP, "4111111111111111", "DE89370400440532013000"]
USER_INPUT = f"Refund customer {EMAIL}, card {CARD}, phone {PHONE}, SSN {SSN}, key {AWS}."

CONFIG = """\
[governance]
policies = ["pii", "tool_allowlist"]

[governance.pii]
mode = "redact"
inspect_output = true

[governance.tools]
allow = ["customer_record"]
"""

log = logging.getLogger("tests.governance.tools")


class Ctx(PipelineContext):
    role: str = "agent"
    customer: str = ""


def customer_record(ctx: RunContext[Ctx], customer: str) -> dict[str, str]:
    """The customer's bank details."""
    ctx.deps.customer = EMAIL  # the context now holds PII: observers must not see it
    record = {"customer": customer, "iban": IBAN, "last_ip": IP, "email": EMAIL}
    log.warning("customer_record(%s) -> %s", customer, record)
    return record


def annotate(text: str) -> str:
    """A plain step that logs its input and adds PII of its own to its output."""
    log.warning("annotating %r", text)
    return f"{text} [checked from {IP}, contact {EMAIL}]"


class Sink:
    """Another plugin: records everything the core hands to observers."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []

    @hookimpl
    def flujo_step_completed(self, event: StepCompleted) -> None:
        self.payloads += [event.input, event.step.output, event.step.error]
        self.payloads += [event.context.model_dump(mode="json"), dict(event.context_keys)]

    @hookimpl
    def flujo_run_finalized(self, event: RunFinalized) -> None:
        run = event.run
        self.payloads += [run.input, run.output, run.error, run.context]
        self.payloads += [(s.output, s.error) for s in run.steps]


def assert_clean(where: str, text: str | bytes) -> None:
    for secret in SECRETS:
        needle: str | bytes = secret.encode() if isinstance(text, bytes) else secret
        assert needle not in text, f"{secret!r} leaked into {where}"


def pipeline(model: Any) -> Pipeline:
    agent = make_agent_async(model, "You handle refunds.", tools=[customer_record])
    return Step("refund", agent) >> Step.from_callable(annotate, name="annotate")


async def run_and_check(
    tmp_path: Path, model: Any, caplog: pytest.LogCaptureFixture
) -> tuple[Any, Sink]:
    sink = Sink()
    config = make_config(tmp_path, CONFIG, sink)
    caplog.set_level(logging.DEBUG)
    async with Flujo(pipeline(model), config=config, context_model=Ctx) as runner:
        result = await runner.run_async(USER_INPUT)
        assert_clean("the database file while open", database_bytes(tmp_path))
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert_clean("the database file", database_bytes(tmp_path))
    assert_clean("the logs", caplog.text)
    assert_clean("the log records", "\n".join(r.getMessage() for r in caplog.records))
    assert_clean("another plugin's payloads", json.dumps(sink.payloads, default=str))
    assert any(isinstance(p, dict) and p.get("customer") == "<EMAIL>" for p in sink.payloads)
    assert "<EMAIL>" in caplog.text  # the tool's log line is there, scrubbed
    # The step output the caller gets was inspected too (inspect_output = true).
    assert_clean("the result", json.dumps(pydantic_core.to_jsonable_python(result.output)))
    return result, sink


async def test_scripted_model_receives_no_pii(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = scripted_model(call_tool("customer_record", customer="<EMAIL>"), "Refunded <EMAIL>.")
    result, _ = await run_and_check(tmp_path, model, caplog)
    assert len(model.requests) == 2
    for request in model.requests:
        assert_clean("the model request", pydantic_core.to_json(request.messages).decode())
    assert model.requests[0].user_prompt == (
        "Refund customer <EMAIL>, card <CREDIT_CARD>, phone <PHONE>, SSN <US_SSN>, key <AWS_KEY>."
    )
    assert model.requests[1].tool_returns["customer_record"] == {
        "customer": "<EMAIL>",
        "iban": "<IBAN>",
        "last_ip": "<IP_ADDRESS>",
        "email": "<EMAIL>",
    }
    assert result.output == "Refunded <EMAIL>. [checked from <IP_ADDRESS>, contact <EMAIL>]"

    state = await open_state(make_config(tmp_path, CONFIG))
    try:
        rows = await fetch_decisions(state, run_id=result.run_id)
    finally:
        await state.close()
    summary = [(r["step"], r["policy"], r["stage"], r["tool"], r["decision"]) for r in rows]
    assert summary == [
        ("refund", "pii", "input", None, "redact"),
        ("refund", "pii", "tool_result", "customer_record", "redact"),
        ("annotate", "pii", "output", None, "redact"),
    ]
    assert rows[0]["entities"] == {
        "AWS_KEY": 1,
        "CREDIT_CARD": 1,
        "EMAIL": 1,
        "PHONE": 1,
        "US_SSN": 1,
    }
    assert rows[0]["rule"] == "redact"
    assert rows[1]["entities"] == {"EMAIL": 1, "IBAN": 1, "IP_ADDRESS": 1}
    assert rows[2]["entities"] == {"EMAIL": 1, "IP_ADDRESS": 1}


async def test_openai_http_model_receives_no_pii(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.queue(call_tool("customer_record", customer="<EMAIL>"), "Refunded <EMAIL>.")
    result, _ = await run_and_check(tmp_path, "openai-chat:gpt-4o-mini", caplog)
    assert [r.path for r in fake_openai.requests] == ["/v1/chat/completions"] * 2
    bodies = [json.dumps(r.body) for r in fake_openai.requests]
    for body in bodies:
        assert_clean("the HTTP request to the model", body)
    assert "<CREDIT_CARD>" in bodies[0]
    assert "<IBAN>" in bodies[1]
    assert result.output.startswith("Refunded <EMAIL>.")


async def test_deny_mode_blocks_before_the_model(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, '[governance]\npolicies = ["pii"]\n[governance.pii]\nmode = "deny"\n'
    )
    model = scripted_model("never")
    async with Flujo(pipeline(model), config=config) as runner:
        result = await runner.run_async(USER_INPUT)
        clean = await runner.run_async("Refund order A-1001 of 2024-01-15 ($12.50)")
    assert result.status is RunStatus.BLOCKED
    assert result.error is not None
    assert "PII" in result.error
    assert EMAIL not in result.error
    assert clean.status is RunStatus.SUCCEEDED
    assert len(model.requests) == 1  # only the clean run reached the model
    assert_clean("the database file", database_bytes(tmp_path))
    state = await open_state(config)
    try:
        rows = await fetch_decisions(state, run_id=result.run_id)
    finally:
        await state.close()
    assert [(r["policy"], r["stage"], r["decision"], r["rule"]) for r in rows] == [
        ("pii", "input", "deny", "deny")
    ]
    assert rows[0]["entities"]["EMAIL"] == 1


async def test_step_override_by_tag_turns_inspection_off_but_not_scrubbing(
    tmp_path: Path,
) -> None:
    config = make_config(
        tmp_path,
        '[governance]\npolicies = ["pii"]\n'
        '[[governance.pii.overrides]]\ntags = ["trusted"]\nenabled = false\n',
    )
    seen: list[str] = []

    def trusted(text: str) -> str:
        seen.append(text)
        return text

    def untrusted(text: str) -> str:
        seen.append(text)
        return text

    steps = Step.from_callable(trusted, name="trusted", tags=["trusted"]) >> Step.from_callable(
        untrusted, name="untrusted"
    )
    async with Flujo(steps, config=config) as runner:
        result = await runner.run_async(f"mail {EMAIL}")
    assert seen == [f"mail {EMAIL}", "mail <EMAIL>"]
    assert result.output == "mail <EMAIL>"
    assert EMAIL.encode() not in database_bytes(tmp_path)


@pytest.mark.parametrize("action", ["refuse", "fail"])
async def test_pii_in_tool_arguments(tmp_path: Path, action: str) -> None:
    sent: list[str] = []

    def send_mail(to: str, body: str) -> str:
        """Send an e-mail."""
        sent.append(to)
        return "sent"

    config = make_config(
        tmp_path,
        f'[governance]\npolicies = ["pii"]\n[governance.pii]\ninspect_tool_args = "{action}"\n',
    )
    # The model got the address from somewhere else (its prompt, memory...) and uses it.
    model = scripted_model(call_tool("send_mail", to=EMAIL, body="hi"), "could not send")
    agent = make_agent_async(model, "You send mail.", tools=[send_mail])
    async with Flujo(Pipeline([Step("mail", agent)]), config=config) as runner:
        result = await runner.run_async("say hi to the customer")
    assert sent == []
    if action == "refuse":
        assert result.status is RunStatus.SUCCEEDED
        refusal = model.requests[1].tool_returns["send_mail"]
        assert refusal == (
            "Tool call refused by policy 'pii': the arguments of 'send_mail' contain PII (EMAIL x1)"
        )
    else:
        assert result.status is RunStatus.BLOCKED
        assert "EMAIL x1" in (result.error or "")
        assert EMAIL not in (result.error or "")
    assert EMAIL.encode() not in database_bytes(tmp_path)
