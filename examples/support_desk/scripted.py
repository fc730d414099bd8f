"""Deterministic stand-ins for the LLMs of the support desk, and a recorder of model inputs.

The demo runs offline: each agent's model is a small rule-based function (a pydantic-ai
``FunctionModel``) that reads exactly what a real model would be sent — the redacted ticket and
the tool results — and decides which tool to call next or what to answer. Set
``FLUJO_DEMO_MODEL`` to a provider string to use a real model instead; :class:`RecordingModel`
wraps either, so the report can show what the model actually received.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from flujo.plugin import model_tool_name

ORDER_ID = re.compile(r"\b[A-Z]-\d{4}\b")
CUSTOMER_ID = re.compile(r"\bcus_[A-Za-z0-9]+\b")
# The contact and card exactly as the ticket writes them, as the triage prompt asks: the
# pseudonyms when the pii policy is at work, the values themselves were it not (a model copies
# what it is given; so the demo's "no PII stored" checks can fail).
AS_WRITTEN = {
    "EMAIL": re.compile(r"<EMAIL(?:_\d+)?>|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "CREDIT_CARD": re.compile(r"<CREDIT_CARD(?:_\d+)?>|\b\d{4}(?:[ -]?\d{4}){3}\b"),
}


@dataclass
class ModelInbox:
    """What one agent's model was sent, request by request (filled by :class:`RecordingModel`)."""

    agent: str
    requests: list[list[ModelMessage]] = field(default_factory=list)

    def first_prompt(self) -> str:
        """The user prompt of the first request: the step input as the model saw it."""
        for messages in self.requests[:1]:
            return _user_prompt(messages)
        return ""


class RecordingModel(WrapperModel):
    """Wraps any model (scripted or real) and records the messages each request carries."""

    def __init__(self, wrapped: Model | str, inbox: ModelInbox) -> None:
        super().__init__(wrapped)
        self.inbox = inbox

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """Record ``messages``, then ask the wrapped model."""
        self.inbox.requests.append(list(messages))
        return await super().request(messages, model_settings, model_request_parameters)


def _user_prompt(messages: list[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart):
                    return part.content if isinstance(part.content, str) else str(part.content)
    return ""


def _tool_returns(messages: list[ModelMessage]) -> dict[str, Any]:
    """``{tool name: its latest result}``, results decoded to plain JSON values."""
    returns: dict[str, Any] = {}
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, ToolReturnPart):
                    returns[part.tool_name] = _plain(part.content)
    return returns


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _answer(info: AgentInfo, value: dict[str, Any], call_id: str) -> ModelResponse:
    if info.output_tools:
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, value, call_id)])
    return ModelResponse(parts=[TextPart(json.dumps(value))])


def _call(name: str, args: dict[str, Any], call_id: str) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=call_id)])


def triage_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The triage agent: recall earlier tickets, look the order up, try what the customer asks.

    It calls one tool per turn, in this order: ``recall_earlier_tickets``, ``get_order`` (when
    the ticket names an order), ``delete_customer`` (when the customer asks to be deleted);
    then it answers the structured triage.
    """
    ticket = _user_prompt(messages)
    seen = _tool_returns(messages)
    order = ORDER_ID.search(ticket)
    customer = CUSTOMER_ID.search(ticket)
    wants_deletion = bool(re.search(r"\bdelete\b|close my account", ticket, re.IGNORECASE))
    turn = f"triage-{len(seen) + 1}"
    if "recall_earlier_tickets" not in seen:
        return _call("recall_earlier_tickets", {"query": ticket[:300]}, turn)
    if order and "get_order" not in seen:
        return _call("get_order", {"input": {"order_id": order.group()}}, turn)
    if wants_deletion and customer and "delete_customer" not in seen:
        return _call("delete_customer", {"input": {"customer_id": customer.group()}}, turn)

    found = seen.get("get_order")
    order_data = found if isinstance(found, dict) and "charges" in found else {}
    charges = [float(c["amount"]) for c in order_data.get("charges", [])]
    total = order_data.get("total")
    earlier = seen.get("recall_earlier_tickets") or []
    earlier = earlier if isinstance(earlier, list) else [str(earlier)]
    double = len(charges) > 1 and total is not None and sum(charges) > float(total)
    refunded_before = sum(
        float(m.group(1))
        for note in earlier
        for m in re.finditer(r"refunded (\d+\.\d+) [A-Z]{3} for order ([A-Z]-\d{4})", str(note))
        if order and m.group(2) == order.group()
    )
    written = {
        kind: found.group() for kind, rx in AS_WRITTEN.items() if (found := rx.search(ticket))
    }
    deletion = seen.get("delete_customer")
    refused = isinstance(deletion, str) and "refused" in deletion.lower()
    summary = (
        f"{customer.group() if customer else 'the customer'} reports order "
        f"{order.group() if order else '(none)'} "
        + (f"charged {len(charges)} times ({charges[0]:.2f} each)" if double else "with an issue")
        + ("; asked to delete the account (refused by policy: privacy team)" if refused else "")
    )
    triage = {
        "customer_id": customer.group() if customer else "",
        "order_id": order.group() if order else None,
        "issue": "double_charge" if double else "other",
        "contact": written.get("EMAIL"),
        "card": written.get("CREDIT_CARD"),
        "currency": order_data.get("currency", "EUR"),
        "order_total": total,
        "charges": charges,
        "earlier_tickets": [str(e) for e in earlier],
        "refunded_before": round(refunded_before, 2),
        "deletion_requested": wants_deletion,
        "summary": summary,
    }
    return _answer(info, triage, turn)


REFUND_CODE = """\
import json
charges = {charges!r}
order_total = {total!r}
refunded_before = {refunded!r}
refund = max(round(sum(charges) - order_total - refunded_before, 2), 0.0)
print(json.dumps({{"refund": refund, "overcharge": round(sum(charges) - order_total, 2)}}))
"""


SANDBOX_TOOL = model_tool_name("flujo.builtins.code_interpreter")
"""The sandbox tool as a model sees it (``flujo__builtins__code_interpreter``)."""


def refund_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The refund agent: compute the overcharge in the sandbox, issue the refund with
    ``issue_refund`` (when there is one), then state it."""
    case = _plain(_user_prompt(messages))
    case = case if isinstance(case, dict) else {}
    seen = _tool_returns(messages)
    charges = [float(c) for c in case.get("charges") or []]
    total = float(case.get("order_total") or 0.0)
    if SANDBOX_TOOL not in seen:
        refunded = float(case.get("refunded_before") or 0.0)
        code = REFUND_CODE.format(charges=charges, total=total, refunded=refunded)
        return _call(SANDBOX_TOOL, {"code": code, "language": "python"}, "refund-1")
    result = seen[SANDBOX_TOOL]
    result = result if isinstance(result, dict) else {}
    try:
        amount = float(json.loads(result.get("stdout") or "{}")["refund"])
        rationale = (
            f"the sandbox computed sum(charges) - order total - refunded before = {amount:.2f}"
        )
    except (ValueError, KeyError, TypeError):
        amount = 0.0
        rationale = f"could not compute the refund: {result.get('error') or result.get('stderr')}"
    refund = {
        "order_id": case.get("order_id"),
        "amount": amount,
        "currency": case.get("currency") or "EUR",
        "rationale": rationale,
    }
    if amount > 0 and "issue_refund" not in seen:
        # Pay it: above 100 EUR, the big-refunds rule makes this call wait for a person.
        args = {k: refund[k] for k in ("order_id", "amount", "currency")}
        return _call("issue_refund", args, "refund-2")
    if isinstance(seen.get("issue_refund"), str) and "refused" in seen["issue_refund"]:
        refund["amount"] = 0.0
        refund["rationale"] = f"the refund was not approved: {seen['issue_refund']}"
    return _answer(info, refund, "refund-3")


def scripted(name: str) -> FunctionModel:
    """The scripted model of agent ``name`` (``triage`` or ``refund``)."""
    function = {"triage": triage_script, "refund": refund_script}[name]
    return FunctionModel(function, model_name=f"scripted-{name}")
