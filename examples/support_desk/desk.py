"""The support-desk pipeline: triage (memory + order service), a route, refund, reply.

    triage   agent   recalls the customer's earlier tickets (flujo-memory), looks the order up
                     through the tool generated from order_service.yaml (flujo-openapi), and
                     may try ``delete_customer`` — which the tool_allowlist policy refuses
    open_case        keeps the triage on the run's context
    route    branch  billing (a charge to refund) or privacy (anything else)
      billing/refund   agent  computes the refund with ``flujo.builtins.code_interpreter``
                              (flujo-sandbox) and issues it with ``issue_refund``: above 100 EUR
                              that call waits for a person (tool_allowlist rule ``big-refunds``)
      privacy/privacy_request  forwards the case to the privacy team
    reply            writes the answer to the customer

flujo-governance pseudonymizes the ticket's e-mail and card number before the first step, so no
model, tool, database row or other plugin sees them; the final reply gets them back.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel
from pydantic_ai import RunContext
from pydantic_ai.models import Model
from scripted import ModelInbox, RecordingModel, scripted

from flujo import FlujoConfig, Pipeline, PipelineContext, Step, make_agent_async


class Triage(BaseModel):
    """What the triage agent makes of a ticket."""

    customer_id: str
    order_id: str | None
    issue: Literal["double_charge", "delivery", "other"]
    contact: str | None
    """The customer's e-mail as the agent saw it (a pseudonym such as ``<EMAIL_1>``)."""
    card: str | None
    """The card the customer mentioned, as the agent saw it (``<CREDIT_CARD_1>``)."""
    currency: str = "EUR"
    order_total: float | None = None
    charges: list[float] = []
    earlier_tickets: list[str] = []
    refunded_before: float = 0.0
    """What earlier tickets already refunded for this order."""
    deletion_requested: bool = False
    summary: str


class Refund(BaseModel):
    """The refund the refund agent decided on."""

    order_id: str | None
    amount: float
    currency: str
    rationale: str


class DeskContext(PipelineContext):
    """The run's context; ``customer_id`` is the memory scope (``[memory] scope_fields``)."""

    customer_id: str = ""
    desk: str = "support"
    """Which team runs the pipeline; the ``privacy-team-only`` rule checks it."""
    case: Triage | None = None
    recalled: list[str] = []


async def recall_earlier_tickets(ctx: RunContext[DeskContext], query: str) -> list[str]:
    """Recall this customer's earlier support tickets that are relevant to ``query``.

    Returns one line per remembered step of an earlier ticket, most relevant first: the run
    it came from and what the triage found or the refund decided.
    """
    cases = await ctx.deps.retrieve(query, limit=3, filter={"step_name": "triage"})
    refunds = await ctx.deps.retrieve(query, limit=10, filter={"step_name": REFUND_PATH})
    hits = [*cases, *refunds]
    notes = []
    for hit in sorted(hits, key=lambda h: (h.memory.created_at, h.memory.step_name or "")):
        try:
            stored = json.loads(hit.memory.text)
        except ValueError:
            stored = None
        if not isinstance(stored, dict):
            note = hit.memory.text
        elif hit.memory.step_name == REFUND_PATH:
            note = (
                f"refunded {float(stored.get('amount', 0)):.2f} {stored.get('currency')} "
                f"for order {stored.get('order_id')}"
            )
        else:
            note = str(stored.get("summary", hit.memory.text))
        notes.append(f"run {hit.memory.run_id}: {note}")
    ctx.deps.recalled = notes
    return notes


REFUND_PATH = "route/billing/refund"
"""Where the refund step is in the tree (its memories are indexed under this path)."""

ISSUED: list[dict[str, object]] = []
"""The refunds ``issue_refund`` paid in this process (for the report)."""


async def issue_refund(order_id: str, amount: float, currency: str) -> str:
    """Pay a refund of ``amount`` ``currency`` back for order ``order_id``."""
    ISSUED.append({"order_id": order_id, "amount": amount, "currency": currency})
    return f"refunded {amount:.2f} {currency} for order {order_id}"


@dataclass
class Agents:
    """The pipeline and what its models received (for the report)."""

    pipeline: Pipeline
    model_name: str
    inboxes: dict[str, ModelInbox] = field(default_factory=dict)


def demo_model() -> str | None:
    """The provider string in ``FLUJO_DEMO_MODEL``, or ``None`` for the scripted models."""
    return os.environ.get("FLUJO_DEMO_MODEL") or None


def build(order_service_url: str, config: FlujoConfig) -> Agents:
    """Build the pipeline with its tools bound to the order service at ``order_service_url``."""
    import order_service

    from flujo_openapi.runtime import operation_tool

    client = order_service.make_client(base_url=order_service_url)
    get_order = operation_tool(order_service.OPERATIONS["get_order"], client)
    delete_customer = operation_tool(order_service.OPERATIONS["delete_customer"], client)
    real = demo_model()
    inboxes = {name: ModelInbox(name) for name in ("triage", "refund")}

    def model(name: str) -> Model:
        return RecordingModel(real or scripted(name), inboxes[name])

    triage = make_agent_async(
        model("triage"),
        "You triage customer-support tickets for an online shop. First recall the customer's "
        "earlier tickets, then look up the order the ticket names, and do what the customer "
        "asks when a tool allows it. Set refunded_before to what earlier tickets already refunded "
        "for this order. Copy the customer's contact and card exactly as written "
        "in the ticket. Summarize the case in one sentence.",
        Triage,
        tools=[recall_earlier_tickets, get_order, delete_customer],
        name="triage",
    )
    refund = make_agent_async(
        model("refund"),
        "You decide refunds. Compute the amount to refund (what was charged beyond the order "
        "total, minus what was already refunded) with the code interpreter, never by hand, "
        "issue it with issue_refund when it is above zero, then state the refund.",
        Refund,
        tools=["flujo.builtins.code_interpreter", issue_refund],
        config=config,
        name="refund",
    )
    steps = [
        Step("triage", triage, max_retries=1),
        Step.from_callable(open_case),
        Step.branch(
            "route",
            route,
            {
                "billing": Step("refund", refund, max_retries=1),
                "privacy": Step.from_callable(privacy_request),
            },
        ),
        Step.from_callable(reply),
    ]
    pipeline = Pipeline(steps, name="support_desk")
    return Agents(pipeline, real or "scripted (deterministic, offline)", inboxes)


def approval_pipeline() -> Pipeline:
    """The pipeline as ``flujo runs approve`` loads it (``desk.py:approval_pipeline``): the
    same tree; answering a paused run calls no tool, so its tools point nowhere."""
    from flujo import load_config

    here = os.path.dirname(os.path.abspath(__file__))
    generated = os.path.join(here, "generated")
    if generated not in sys.path:
        sys.path.insert(0, generated)
    return build("http://127.0.0.1:9", load_config(os.path.join(here, "flujo.toml"))).pipeline


def route(triage: Triage) -> str:
    """The route of a case: billing when there is a charge to look at, privacy otherwise."""
    return "billing" if triage.issue == "double_charge" else "privacy"


def privacy_request(triage: Triage) -> Refund:
    """Forward a case with no charge to refund to the privacy team: nothing is refunded."""
    return Refund(
        order_id=triage.order_id,
        amount=0.0,
        currency=triage.currency,
        rationale="no charge to refund; forwarded to the privacy team",
    )


def open_case(triage: Triage, context: DeskContext) -> Triage:
    """Keep the triage on the context, for the reply."""
    context.case = triage
    return triage


def reply(refund: Refund, context: DeskContext) -> str:
    """Write the reply to the customer (pseudonyms are swapped back for the caller)."""
    case = context.case
    contact = (case.contact if case else None) or "your e-mail address"
    card = (case.card if case else None) or "your card"
    lines = ["Hello,", ""]
    if refund.amount > 0:
        lines.append(
            f"you were charged twice for order {refund.order_id}. We have refunded "
            f"{refund.amount:.2f} {refund.currency} to {card}; the confirmation goes to {contact}."
        )
    elif case and case.refunded_before > 0:
        lines.append(
            f"the extra charge for order {refund.order_id} was already refunded: "
            f"{case.refunded_before:.2f} {refund.currency} to {card}. Refunds take up to five "
            "business days to show on your statement."
        )
    else:
        lines.append(f"we looked at order {refund.order_id} and found nothing to refund.")
    if case and case.earlier_tickets:
        lines.append("We can see you already wrote to us about this: your case is now a priority.")
    if case and case.deletion_requested:
        lines.append(
            "We cannot delete your account from the support desk: our privacy team will "
            f"confirm your deletion request at {contact} within 30 days."
        )
    lines += ["", "The support desk"]
    return "\n".join(lines)
