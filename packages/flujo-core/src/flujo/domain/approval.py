"""What a run paused for a person stores, and how an answer is bound to what it answers.

A tool call a policy wants approved (:class:`~flujo.domain.errors.ToolApprovalRequired`)
pauses its step: the step's row holds a :data:`TOOL_APPROVAL` record (the calls waiting, each
with its tool, id, arguments and their fingerprint, and the agent's message history to resume
from), as stored, i.e. scrubbed by the run's policies like every step output. A person's
answer is stored at ``<step path>@approval`` naming the ids *and fingerprints* of the calls it
answers: when the agent resumes, a call runs only if its id and the fingerprint of the
arguments it is about to run with are the ones answered, so an approval never approves another
call (nor the same call with other arguments).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

__all__ = [
    "APPROVAL_SUFFIX",
    "TOOL_APPROVAL",
    "answer_for",
    "call_fingerprint",
    "expired",
    "expiry_at",
    "pending_record",
]

TOOL_APPROVAL = "tool_approval"
"""``kind`` of the record a step paused for tool-call approval stores as its output."""

APPROVAL_SUFFIX = "@approval"
"""The answer to the pause at path ``p`` is stored at ``p + APPROVAL_SUFFIX``."""


def call_fingerprint(tool: str, args: Any) -> str:
    """``sha256:`` of the tool's name and its arguments as canonical JSON (sorted keys, no
    spaces): the same call, whatever the order of its keys; any other value, another one."""
    text = json.dumps(
        {"tool": str(tool), "args": args},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=repr,
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def expiry_at(expires_in_s: float | None, now: float | None = None) -> float | None:
    """When a pause made now with ``expires_in_s`` expires (epoch seconds), or ``None``."""
    if expires_in_s is None:
        return None
    return (time.time() if now is None else now) + expires_in_s


def expired(record: Any, now: float | None = None) -> float | None:
    """The expiry of a pause record (a dict with ``expires_at``) when it has passed."""
    at = record.get("expires_at") if isinstance(record, dict) else None
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        return None
    return float(at) if (time.time() if now is None else now) >= at else None


def pending_record(
    calls: list[dict[str, Any]],
    messages: list[Any],
    policies: list[str],
    expires_at: float | None,
) -> dict[str, Any]:
    """The output of a step paused for approval of ``calls`` (``tool``, ``tool_call_id``,
    ``args``, ``reason``)."""
    return {
        "kind": TOOL_APPROVAL,
        "calls": calls,
        "policies": policies,
        "expires_at": expires_at,
        "messages": messages,
    }


def answer_for(pending: Any, answer: Any) -> dict[str, Any] | None:
    """The stored ``answer`` (an ``@approval`` row's output) when it answers exactly the calls
    ``pending`` waits for (same ids, same fingerprints), else ``None``: an answer given to an
    earlier pause of the step answers nothing now."""
    if not isinstance(pending, dict) or not isinstance(answer, dict):
        return None
    answered = answer.get("calls")
    calls = pending.get("calls")
    if not isinstance(answered, list) or not isinstance(calls, list):
        return None
    want = sorted(
        (str(c.get("tool_call_id")), call_fingerprint(str(c.get("tool")), c.get("args")))
        for c in calls
        if isinstance(c, dict)
    )
    got = sorted(
        (str(c.get("tool_call_id")), str(c.get("fingerprint")))
        for c in answered
        if isinstance(c, dict)
    )
    if not want or want != got or answer.get("decision") not in ("approved", "rejected"):
        return None
    return answer
