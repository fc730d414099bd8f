"""Pseudonymize: stable per-run placeholders across steps and tools, restored for the caller,
never persisted, and forgotten when the run ends."""

from __future__ import annotations

from pathlib import Path

from gov_testkit import database_bytes, make_config

from flujo import Flujo, Pipeline, RunStatus, Step, make_agent_async
from flujo.testing.models import call_tool, scripted_model
from flujo_governance.pii import PIIScrubbingPolicy
from flujo_governance.settings import PIISettings

EMAIL = "ana.lopez@example.com"
OTHER = "bob@example.org"
CARD = "4111 1111 1111 1111"


def contact(customer: str) -> str:
    """How to reach a customer."""
    return f"{customer}: write to {EMAIL} or {OTHER}"


async def test_round_trip(tmp_path: Path) -> None:
    policy = PIIScrubbingPolicy(PIISettings(mode="pseudonymize"))
    model = scripted_model(
        call_tool("contact", customer="<EMAIL_1>"),
        "Wrote to <EMAIL_1> and <EMAIL_2> about <CREDIT_CARD_1>.",
    )
    agent = make_agent_async(model, "Help.", tools=[contact])

    def second(text: str) -> str:
        return f"{text} Also {EMAIL}."  # the same value again, in another step

    pipeline = Step("agent", agent) >> Step.from_callable(second, name="second")
    config = make_config(tmp_path, "")
    async with Flujo(pipeline, config=config, policies=[policy]) as runner:
        result = await runner.run_async(f"Customer {EMAIL} paid with {CARD}.")
    assert result.status is RunStatus.SUCCEEDED, result.error
    # What the model saw: pseudonyms, the same one for the same value in input and tool result.
    assert model.requests[0].user_prompt == "Customer <EMAIL_1> paid with <CREDIT_CARD_1>."
    assert model.requests[1].tool_returns["contact"] == (
        "<EMAIL_1>: write to <EMAIL_1> or <EMAIL_2>"
    )
    # The second step received the pseudonyms and added the raw value back: same pseudonym
    # (step results come back as stored; only the final output is restored).
    assert result.steps[1].output == (
        "Wrote to <EMAIL_1> and <EMAIL_2> about <CREDIT_CARD_1>. Also <EMAIL_1>."
    )
    # The caller gets the originals back...
    assert result.output == f"Wrote to {EMAIL} and {OTHER} about {CARD}. Also {EMAIL}."
    # ...the database holds only pseudonyms...
    raw = database_bytes(tmp_path)
    for secret in (EMAIL, OTHER, CARD):
        assert secret.encode() not in raw
    assert b"<EMAIL_1>" in raw
    assert b"<CREDIT_CARD_1>" in raw
    # ...and the vault of the finished run is gone.
    assert result.run_id not in policy.vaults


async def test_runs_do_not_share_pseudonyms(tmp_path: Path) -> None:
    policy = PIIScrubbingPolicy(PIISettings(mode="pseudonymize"))
    seen: list[str] = []

    def echo(text: str) -> str:
        seen.append(text)
        return text

    config = make_config(tmp_path, "")
    steps = Pipeline([Step.from_callable(echo)])
    async with Flujo(steps, config=config, policies=[policy]) as runner:
        first = await runner.run_async(f"{OTHER} and {EMAIL}")
        second = await runner.run_async(f"{EMAIL}")
    assert seen == ["<EMAIL_1> and <EMAIL_2>", "<EMAIL_1>"]
    assert first.output == f"{OTHER} and {EMAIL}"
    assert second.output == EMAIL
    # Distinct vaults: EMAIL was <EMAIL_2> in the first run and is <EMAIL_1> in the second,
    # and neither run's originals outlive it.
    assert first.run_id != second.run_id
    assert first.run_id not in policy.vaults
    assert second.run_id not in policy.vaults


def test_scrubbing_outside_a_run_keeps_nothing_and_links_nothing() -> None:
    """What is scrubbed with no run (flujo-otel's exporter, ``flujo memory add``) gets
    pseudonyms of its own call: no vault is kept for "no run" (it would hold every value
    ever scrubbed, raw, for the life of the process), and two calls never share a pseudonym
    (a trace's ``<EMAIL_1>`` must not link runs, as runs never share them)."""
    from flujo import PipelineContext
    from flujo_governance.pii import PIIScrubbingPolicy
    from flujo_governance.settings import PIISettings

    policy = PIIScrubbingPolicy(PIISettings(mode="pseudonymize"))
    first = policy.scrub(
        PipelineContext(), ["ann@example.com", "bob@example.com", "ann@example.com"]
    )
    assert first == ["<EMAIL_1>", "<EMAIL_2>", "<EMAIL_1>"]  # consistent within a call
    for i in range(50):
        policy.scrub(PipelineContext(), f"user{i}@example.com")
    second = policy.scrub(PipelineContext(), "bob@example.com")
    assert second == "<EMAIL_1>"  # numbered afresh: not bob's number from another call
    assert "-" not in policy.vaults
    assert "" not in policy.vaults
