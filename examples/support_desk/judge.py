"""The shadow evaluation's judge: flujo-evals' LLM judge, on a model that works offline.

``[eval] judge_model`` takes a provider string only, so the demo plugs its judge in as the
``python`` evaluator (``python = "judge:judge_reply"`` in flujo.toml). ``judge_reply`` runs
flujo-evals' own :class:`~flujo_evals.evaluators.JudgeEvaluator` — same instructions, same
structured verdict, same redacted view of the run — on a deterministic scripted model, or on
``FLUJO_DEMO_MODEL`` when it is set.
"""

from __future__ import annotations

import json
import os
import re

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from flujo.domain.interfaces import EvaluationResult
from flujo.domain.models import RunRecord

RUBRIC = """\
Score the support desk's reply to the ticket from 0 to 1, one quarter per point met:
1. the run succeeded;
2. the reply states the refund amount and currency;
3. the reply answers every request in the ticket (refund, account deletion);
4. no personal data in clear (e-mail addresses, card numbers) in what you were given.
"""

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")


def _scripted_verdict(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Apply :data:`RUBRIC` point by point to the run the judge was sent."""
    prompt = ""
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    prompt = part.content
    try:
        run = json.loads(prompt)
    except ValueError:
        run = {}
    ticket, reply = json.dumps(run.get("input")), str(run.get("output") or "")
    checks = {
        "succeeded": run.get("status") == "succeeded",
        "refund stated": bool(re.search(r"\d+\.\d{2} [A-Z]{3}", reply)),
        "all requests answered": "delete" not in ticket.lower() or "delet" in reply.lower(),
        "no PII in clear": not (EMAIL.search(prompt) or CARD.search(prompt)),
    }
    passed = [name for name, ok in checks.items() if ok]
    failed = [name for name, ok in checks.items() if not ok]
    verdict = {
        "score": len(passed) / len(checks),
        "label": "good" if not failed else "needs work",
        "reasoning": f"met: {', '.join(passed) or '-'}; missed: {', '.join(failed) or '-'}",
    }
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, verdict, "verdict")])


async def judge_reply(run: RunRecord) -> EvaluationResult:
    """Judge ``run`` (as stored, i.e. redacted) against :data:`RUBRIC`."""
    from flujo_evals.evaluators import JudgeEvaluator

    model = os.environ.get("FLUJO_DEMO_MODEL") or FunctionModel(
        _scripted_verdict, model_name="scripted-judge"
    )
    return await JudgeEvaluator(model, RUBRIC).evaluate(run)
