"""The middleware chain around one step: policies, validation, the agent, retries, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flujo.application._maybe_await import maybe_await
from flujo.domain.context import PipelineContext
from flujo.domain.errors import (
    InnerStepFailed,
    InputValidationError,
    PolicyViolation,
    StepTimeoutError,
    ToolApprovalRequired,
    UsageLimitExceededError,
)
from flujo.domain.events import PolicyDecided
from flujo.domain.interfaces import GovernancePolicy, PolicyDecision
from flujo.domain.models import Step, StepResult, StepStatus, Usage, UsageLimits
from flujo.domain.scope import (
    DecisionNote,
    StepScope,
    end_decision_note,
    reset_step_scope,
    set_step_scope,
    start_decision_note,
)

if TYPE_CHECKING:
    from flujo.application.control_flow import Answered
    from flujo.application.scrubbing import Scrubbing

PolicyListener = Callable[[PolicyDecided], None]

_PASSES = frozenset({PolicyDecision.ALLOW, PolicyDecision.REDACT})
"""The decisions that let an input, an output or a tool's result through."""
_AGAIN = frozenset({PolicyDecision.ALLOW, PolicyDecision.APPROVE})
"""A policy's decisions on a call a person approved that repeat what it decided at the pause."""


def _sooner(
    first: ToolApprovalRequired | None, other: ToolApprovalRequired
) -> ToolApprovalRequired:
    """The approval to ask for when several policies want one: the first policy's, expiring
    at the earliest expiry any of them set."""
    if first is None:
        return other
    expiries = [e for e in (first.expires_in_s, other.expires_in_s) if e is not None]
    if expiries and first.expires_in_s != min(expiries):
        first.expires_in_s = min(expiries)
    return first


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for a step's error; an exception whose ``str()`` itself raises still
    fails its step with a message instead of escaping the run (which would stay running)."""
    try:
        text = str(exc)
    except Exception as inner:  # noqa: BLE001 - any failure to render is reported, not raised
        text = f"<str() of the error failed: {type(inner).__name__}>"
    return f"{type(exc).__name__}: {text}"


class StepCoordinator:
    """Runs one step through the chain (DESIGN.md, "Data flow of one run").

    1. every policy's ``inspect_input``, in order: DENY blocks the step before the agent is
       called, REDACT passes the redacted data on;
    2. the input is validated against the step's input type;
    3. the agent runs (with the step's timeout), its tool calls routed through every policy's
       ``inspect_tool_call``; failures are retried up to ``max_retries``;
    4. every policy's optional ``inspect_output``;
    5. the run's usage limits are checked.

    A policy that raises anything but :class:`PolicyViolation` fails the step: a policy that
    cannot be evaluated never lets data through.
    """

    def __init__(
        self,
        policies: Sequence[GovernancePolicy] = (),
        *,
        on_decision: PolicyListener | None = None,
        scrubbing: Scrubbing | None = None,
    ) -> None:
        self.policies = tuple(policies)
        self._on_decision = on_decision
        self._scrubbing = scrubbing

    async def _decided(
        self,
        scope: StepScope,
        policy: GovernancePolicy,
        where: str,
        decision: PolicyDecision,
        note: DecisionNote,
        *,
        tool_name: str | None = None,
        reason: str | None = None,
    ) -> None:
        if self._on_decision is None:
            return
        rule = note.rule
        if self._scrubbing is not None and self._scrubbing.active:
            # Observers get scrubbed data: a reason or rule may quote what the policy saw.
            reason = await self._scrubbed_text(scope, reason)
            rule = await self._scrubbed_text(scope, rule)
        self._on_decision(
            PolicyDecided(
                scope.run_id,
                scope.step_name,
                policy.name,
                where,
                decision,
                tool_name,
                reason,
                rule,
                dict(note.entities),
            )
        )

    def answered(self, answer: Answered) -> None:
        """Tell the audit listeners a person answered a paused run (``where="approval"``):
        one event per tool call answered, or one for a human step."""
        if self._on_decision is None:
            return
        decision = PolicyDecision.ALLOW if answer.approved else PolicyDecision.DENY
        policies = answer.policies or ("human",)
        for tool in answer.tools or (None,):
            self._on_decision(
                PolicyDecided(
                    answer.run_id,
                    answer.path,
                    ",".join(policies),
                    "approval",
                    decision,
                    tool,
                    answer.reason,
                    "approved" if answer.approved else "rejected",
                    actor=answer.by,
                )
            )

    async def _scrubbed_text(self, scope: StepScope, text: str | None) -> str | None:
        if text is None or self._scrubbing is None:
            return text
        scrubbed = await self._scrubbing.scrub(scope.context, text)
        return scrubbed if isinstance(scrubbed, str) else str(scrubbed)

    async def _ask(
        self,
        scope: StepScope,
        policy: GovernancePolicy,
        where: str,
        method: Callable[..., Any],
        *args: Any,
        tool_name: str | None = None,
        approved: bool = False,
    ) -> tuple[Any, DecisionNote]:
        """``method(*args)`` (one inspect method) with a fresh :func:`decision_detail` note; a
        :class:`PolicyViolation` is reported as that policy's DENY and raised again, an
        approval request as its APPROVE (unless the call is ``approved`` already)."""
        note, token = start_decision_note()
        try:
            answer = await maybe_await(method(*args))
        except ToolApprovalRequired as exc:
            end_decision_note(token)
            if where != "tool_call":
                # Only a tool call can wait for a person: anywhere else it is a denial.
                await self._decided(
                    scope, policy, where, PolicyDecision.DENY, note, reason=exc.reason
                )
                raise PolicyViolation(
                    policy.name, f"approval is only for tool calls: {exc.reason}", where=where
                ) from None
            if not approved:
                await self._decided(
                    scope,
                    policy,
                    where,
                    PolicyDecision.APPROVE,
                    note,
                    tool_name=tool_name,
                    reason=exc.reason,
                )
            raise
        except PolicyViolation as exc:
            end_decision_note(token)
            await self._decided(
                scope,
                policy,
                where,
                PolicyDecision.DENY,
                note,
                tool_name=tool_name,
                reason=exc.reason,
            )
            raise
        except BaseException:
            end_decision_note(token)
            raise
        end_decision_note(token)
        return answer, note

    async def _inspect(self, scope: StepScope, where: str, data: Any) -> Any:
        for policy in self.policies:
            method = getattr(policy, f"inspect_{where}", None)
            if method is None:
                continue
            answer, note = await self._ask(scope, policy, where, method, scope.context, data)
            decision, data = answer
            decision = PolicyDecision(decision)
            await self._decided(scope, policy, where, decision, note)
            if decision not in _PASSES:
                # DENY, and APPROVE (a person cannot be asked about an input or an output).
                raise PolicyViolation(
                    policy.name, f"the {where} of step {scope.step_name!r}", where=where
                )
        return data

    async def guard_tool_call(
        self, scope: StepScope, tool_name: str, args: dict[str, Any], *, approved: bool = False
    ) -> None:
        """Ask every policy about a tool call (:class:`~flujo.domain.scope.ToolGate`).

        Every policy is asked, even after one wants an approval: a denial or a refusal by a
        later one wins (a person is never asked about a call that would not run anyway).
        Then :class:`ToolApprovalRequired` names the first policy that wants one, with the
        shortest expiry any of them set. When a person ``approved`` the call at its pause, an
        ALLOW or APPROVE is the decision already reported then (before the person's answer):
        only a decision that now stops the call is reported."""
        approval: ToolApprovalRequired | None = None
        for policy in self.policies:
            try:
                answer, note = await self._ask(
                    scope,
                    policy,
                    "tool_call",
                    policy.inspect_tool_call,
                    scope.context,
                    tool_name,
                    args,
                    tool_name=tool_name,
                    approved=approved,
                )
            except ToolApprovalRequired as wanted:
                approval = _sooner(approval, wanted)
                continue
            decision = PolicyDecision(answer)
            if not (approved and decision in _AGAIN):
                await self._decided(scope, policy, "tool_call", decision, note, tool_name=tool_name)
            if decision is PolicyDecision.APPROVE:
                reason = f"policy {policy.name!r} wants a person to approve {tool_name!r}"
                approval = _sooner(approval, ToolApprovalRequired(policy.name, reason))
            elif decision is not PolicyDecision.ALLOW:
                # REDACT has no meaning for a call; refusing it is the safe reading.
                raise PolicyViolation(policy.name, f"tool call {tool_name!r}", where="tool_call")
        if approval is not None:
            raise approval

    async def inspect_tool_result(self, scope: StepScope, tool_name: str, result: Any) -> Any:
        """Let every policy with ``inspect_tool_result`` see (and redact) a tool's result."""
        for policy in self.policies:
            method = getattr(policy, "inspect_tool_result", None)
            if method is None:
                continue
            answer, note = await self._ask(
                scope,
                policy,
                "tool_result",
                method,
                scope.context,
                tool_name,
                result,
                tool_name=tool_name,
            )
            decision, result = answer
            decision = PolicyDecision(decision)
            await self._decided(scope, policy, "tool_result", decision, note, tool_name=tool_name)
            if decision not in _PASSES:
                raise PolicyViolation(
                    policy.name, f"the result of tool {tool_name!r}", where="tool_result"
                )
        return result

    async def execute_step(
        self,
        step: Step,
        data: Any,
        context: PipelineContext,
        *,
        run_id: str,
        run_usage: Usage,
        limits: UsageLimits | None = None,
        path: str | None = None,
    ) -> StepResult:
        """Run ``step`` on ``data`` and report the outcome; never raises for step failures.

        The step's :class:`~flujo.domain.scope.StepScope` is current for the whole chain, so
        policies and agents alike can see the step's name and tags. A step inside a
        control-flow step is known by its ``path`` (its scope's name and its result's).
        """
        started = time.perf_counter()
        name = step.name if path is None else path
        scope = StepScope(
            run_id,
            name,
            context,
            self if self.policies else None,
            limits,
            run_usage,
            Usage(),
            step.tags,
        )
        token = set_step_scope(scope)
        try:
            status, output, error, attempts = await self._chain(step, data, scope)
        finally:
            reset_step_scope(token)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return StepResult(name, status, output, error, attempts, latency_ms, scope.usage)

    async def _chain(
        self, step: Step, data: Any, scope: StepScope
    ) -> tuple[StepStatus, Any, str | None, int]:
        """The middleware chain: ``(status, output, error, attempts)``."""
        try:
            if self.policies:
                data = await self._inspect(scope, "input", data)
            data = step.validate_input(data)
        except PolicyViolation as exc:
            return StepStatus.BLOCKED, None, str(exc), 0
        except InputValidationError as exc:
            return StepStatus.FAILED, None, str(exc), 0
        except Exception as exc:  # noqa: BLE001 - a broken policy fails the step (fail closed)
            return StepStatus.FAILED, None, f"policy error: {describe_error(exc)}", 0

        attempts, last_error = 0, ""
        while attempts <= step.max_retries:
            attempts += 1
            try:
                if step.timeout_s is None:  # the common case, without a wrapping coroutine
                    output = await step.agent.run(data, context=scope.context)
                else:
                    output = await self._attempt_with_timeout(step, data, scope.context)
            except PolicyViolation as exc:
                return StepStatus.BLOCKED, None, str(exc), attempts
            except UsageLimitExceededError as exc:
                return StepStatus.LIMIT_EXCEEDED, None, str(exc), attempts
            except InnerStepFailed as exc:  # a control-flow step ends as its inner step did
                return StepStatus(exc.status), exc.output, exc.error, attempts
            except Exception as exc:  # noqa: BLE001 - any agent error is retried, then recorded
                last_error = describe_error(exc)
                # What a failed attempt spent counts too: no retry past the run's budget.
                if (crossed := self._crossed(scope)) is not None:
                    return StepStatus.LIMIT_EXCEEDED, None, crossed, attempts
                continue
            if (crossed := self._crossed(scope)) is not None:
                return StepStatus.LIMIT_EXCEEDED, output, crossed, attempts
            if self.policies:
                try:
                    output = await self._inspect(scope, "output", output)
                except PolicyViolation as exc:
                    return StepStatus.BLOCKED, None, str(exc), attempts
                except Exception as exc:  # noqa: BLE001 - fail closed, as for inputs
                    error = f"policy error: {describe_error(exc)}"
                    return StepStatus.FAILED, None, error, attempts
            return StepStatus.SUCCEEDED, output, None, attempts
        return StepStatus.FAILED, None, last_error, attempts

    @staticmethod
    async def _attempt_with_timeout(step: Step, data: Any, context: PipelineContext) -> Any:
        timeout_s = step.timeout_s
        assert timeout_s is not None  # steps without one call their agent directly
        try:
            return await asyncio.wait_for(step.agent.run(data, context=context), timeout_s)
        except TimeoutError:
            raise StepTimeoutError(step.name, timeout_s) from None

    @staticmethod
    def _crossed(scope: StepScope) -> str | None:
        if scope.limits is None:
            return None
        total = Usage()
        total.add(scope.run_usage)
        total.add(scope.usage)
        crossed = scope.limits.first_crossed(total)
        return None if crossed is None else f"usage limit exceeded: {crossed}"
