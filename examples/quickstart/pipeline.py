"""Quickstart: triage a support ticket with an agent that calls a tool, then route it.

Runs offline by default: the agent's model is a deterministic script (a pydantic-ai
FunctionModel), so no key and no network are needed. Set ``FLUJO_DEMO_MODEL`` to a provider
string (for example ``openai:gpt-4o-mini``, with ``OPENAI_API_KEY``) to run the same pipeline
on a real model.

    flujo run pipeline.py:pipeline --input "Order A-1001 never arrived" \
        --context '{"customer": "ana"}'
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel
from pydantic_ai import RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from flujo import PipelineContext, Step, make_agent_async

ORDERS = {"A-1001": "shipped 12 days ago, no delivery scan", "A-1002": "delivered"}


class Ticket(BaseModel):
    """What triage extracts from a customer's message."""

    order_id: str | None
    category: Literal["delivery", "refund", "other"]
    urgent: bool
    summary: str


class SupportContext(PipelineContext):
    """Shared by the steps and stored with the run."""

    customer: str = "anonymous"
    order_status: str | None = None


async def lookup_order(ctx: RunContext[SupportContext], order_id: str) -> str:
    """Look up the shipping status of an order by its id (like ``A-1001``)."""
    status = ORDERS.get(order_id, "no such order")
    ctx.deps.order_status = status
    return status


def _scripted_triage(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A deterministic stand-in for an LLM: look the order up, then classify the ticket."""
    prompt = str(messages[0].parts[-1].content) if messages else ""
    returned = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    match = re.search(r"[A-Z]-\d{4}", prompt)
    if match and not returned:
        return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": match.group()})])
    status = str(returned[-1].content) if returned else "unknown"
    ticket = {
        "order_id": match.group() if match else None,
        "category": "delivery" if "arrive" in prompt.lower() else "other",
        "urgent": "no delivery" in status,
        "summary": f"{prompt.strip()[:60]} (order status: {status})",
    }
    if info.output_tools:
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, ticket)])
    return ModelResponse(parts=[TextPart(str(ticket))])


MODEL = os.environ.get("FLUJO_DEMO_MODEL") or FunctionModel(_scripted_triage, model_name="scripted")

triage = make_agent_async(
    MODEL,
    "You triage customer support tickets. Look up the order when an id is given.",
    output_type=Ticket,
    tools=[lookup_order],
)


def route(ticket: Ticket, context: SupportContext) -> str:
    """Pick a queue and draft the first reply."""
    queue = "priority" if ticket.urgent else ticket.category
    return (
        f"[{queue}] Hi {context.customer}, thanks for writing about "
        f"{ticket.order_id or 'your request'}: {ticket.summary}"
    )


pipeline = Step("triage", triage, max_retries=1) >> Step.from_callable(route)
