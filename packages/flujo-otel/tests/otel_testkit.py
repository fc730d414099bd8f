"""What the flujo-otel tests share: a policy that scrubs PII and refuses a tool, the raw
values it must never let out, and a walk over everything a span carries."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from flujo import (
    Pipeline,
    PipelineContext,
    PolicyDecision,
    Step,
    ToolCallRefused,
    make_agent_async,
)
from flujo.testing.models import call_tool, scripted_model

EMAIL = "jose.nunez@example.com"
CARD = "4111 1111 1111 1111"
NAME = "José Núñez"
OTHER_NAME = "Zoë Ørsted"
RAW = {EMAIL: "<EMAIL>", CARD: "<CARD>", NAME: "<NAME>", OTHER_NAME: "<NAME>"}


def _scrub_text(text: str) -> str:
    for raw, placeholder in RAW.items():
        text = text.replace(raw, placeholder)
    return text


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value


class PiiPolicy:
    """Lets the data through to the agent (so pydantic-ai's spans hold it raw) but scrubs it
    wherever it leaves the process; refuses the ``refund`` tool."""

    name = "test_pii"

    def inspect_input(self, context: PipelineContext, data: Any) -> tuple[PolicyDecision, Any]:
        return PolicyDecision.ALLOW, data

    def inspect_tool_call(
        self, context: PipelineContext, tool_name: str, args: dict[str, Any]
    ) -> PolicyDecision:
        if tool_name == "refund":
            raise ToolCallRefused(self.name, "refunds need a person")
        return PolicyDecision.ALLOW

    def scrub(self, context: PipelineContext, value: Any) -> Any:
        return _scrubbed(value)


def texts(spans: Sequence[ReadableSpan]) -> Iterator[tuple[str, str]]:
    """``(where, text)`` for every value a span carries: name, status, attributes, events,
    links, resource; lists and JSON texts taken apart."""

    def walk(where: str, value: Any) -> Iterator[tuple[str, str]]:
        if isinstance(value, str):
            yield where, value
            try:
                parsed = json.loads(value)
            except ValueError:
                return
            if not isinstance(parsed, str):
                yield from walk(where + "<json>", parsed)
        elif isinstance(value, dict):
            for k, v in value.items():
                yield where, str(k)
                yield from walk(f"{where}.{k}", v)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                yield from walk(f"{where}[{i}]", v)
        elif value is not None:
            yield where, str(value)

    for span in spans:
        here = f"span {span.name!r}"
        yield from walk(here + " name", span.name)
        yield from walk(here + " status", span.status.description)
        yield from walk(here + " attributes", dict(span.attributes or {}))
        for event in span.events:
            yield from walk(here + f" event {event.name}", event.name)
            yield from walk(here + f" event {event.name}", dict(event.attributes or {}))
        for link in span.links:
            yield from walk(here + " link", dict(link.attributes or {}))
        yield from walk(here + " resource", dict(span.resource.attributes))


def leaks(spans: Sequence[ReadableSpan]) -> list[str]:
    """Where any raw value (or its JSON-escaped form) is found."""
    forms = {form for raw in RAW for form in (raw, json.dumps(raw)[1:-1], raw.lower())}
    return [f"{where}: {text[:120]!r}" for where, text in texts(spans) for f in forms if f in text]


INPUT = f"I am {NAME}, mail {EMAIL}, card {CARD}; my partner is {OTHER_NAME}"


async def lookup_customer(email: str) -> str:
    """Find a customer by e-mail."""
    return f"{NAME} <{email}> pays with {CARD}"


async def refund(amount: int) -> str:
    """Refund an amount."""
    return f"refunded {amount}"


def fraud(text: str) -> str:
    return f"fraud check of {text}"


def mail(text: str) -> str:
    return f"mailed {EMAIL}"


def pipeline() -> Pipeline:
    model = scripted_model(
        call_tool("lookup_customer", email=EMAIL),
        call_tool("refund", amount=10),
        f"Dear {NAME}, we found your order.",
    )
    agent = make_agent_async(model, "Help the customer.", tools=[lookup_customer, refund])
    checks = Step.parallel(
        "checks",
        {"fraud": Step.from_callable(fraud, name="score"), "notify": Step.from_callable(mail)},
    )
    return Pipeline([Step("triage", agent), checks], name="support")
